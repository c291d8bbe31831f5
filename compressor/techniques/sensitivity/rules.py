"""technique=sensitivity's schema, torch-free: checked before torch loads (stage.py) and by the
callback on its own arguments (callback.py)."""

from compressor import rules
from compressor.techniques.prune.rules import SEARCHED

RULES = {
    "grid": rules.fractions(),
    "methods": rules.subset(SEARCHED),
    "quant": rules.boolean(),
    "calibration_batches": rules.integer(1),
    "include": rules.strings(),
    "exclude": rules.strings(),
}
