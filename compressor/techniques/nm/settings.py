"""technique=nm's settings, torch-free: each key's default, rule and meaning (`NM`), and n < m
(`check`), checked before torch loads (stage.py) and by the callback on its arguments (callback.py)."""

from dataclasses import dataclass

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques import shared


@dataclass
class NM(shared.FineTune):
    n: int = s.setting(2, s.integer(1), "keep the n largest of every m consecutive input weights (2:4: half)")
    m: int = s.setting(4, s.integer(2), "the group: 2:4 is the pattern sparse tensor cores run")
    include: list = s.setting(
        ["*"], s.strings(), "layer-name globs (a layer whose inputs do not split into m is skipped)"
    )
    exclude: list = s.setting([], s.strings(), "layer-name globs left dense")


def check(values: dict, prefix: str = "technique.") -> None:
    """n < m: n of every m weights are kept."""
    n, m = values["n"], values["m"]
    if n >= m:
        raise ConfigError(
            f"{prefix}n={n} with {prefix}m={m}: n of every m weights are kept, so n must be "
            f"less than m (2:4 is n=2 m=4)"
        )
