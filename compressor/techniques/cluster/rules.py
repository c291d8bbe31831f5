"""technique=cluster's schema, torch-free: checked before torch loads (stage.py) and by the
callback on its own arguments (callback.py)."""

from compressor import rules

RULES = {"bits": rules.integer(1, 8), "include": rules.strings(), "exclude": rules.strings()}
