"""technique=nm's schema, torch-free: checked before torch loads (stage.py) and by the callback on
its own arguments (callback.py)."""

from compressor import rules
from compressor.errors import ConfigError

RULES = {"n": rules.integer(1), "m": rules.integer(2), "include": rules.strings(), "exclude": rules.strings()}


def check(values: dict, prefix: str = "technique.") -> None:
    """Each key's rule, then n < m (n of every m weights are kept)."""
    rules.apply(values, RULES, prefix)
    n, m = values.get("n", 2), values.get("m", 4)
    if n >= m:
        raise ConfigError(
            f"{prefix}n={n} with {prefix}m={m}: n of every m weights are kept, so n must be "
            f"less than m (2:4 is n=2 m=4)"
        )
