"""technique=cluster's settings, torch-free: each key's default, rule and meaning, checked before
torch loads (stage.py) and by the callback on the arguments it is given (callback.py)."""

from dataclasses import dataclass

from compressor import settings as s
from compressor.techniques import shared


@dataclass
class Cluster(shared.FineTune):
    bits: int = s.setting(
        4, s.integer(1, 8), "2**bits shared values per layer; Deep Compression: 4-5 for fc, 8 for conv"
    )
    include: list = s.setting(["*"], s.strings(), "layer-name globs (Conv2d and Linear)")
    exclude: list = s.setting([], s.strings(), "layer-name globs left unshared")
