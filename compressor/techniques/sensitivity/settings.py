"""technique=sensitivity's settings, torch-free: each key's default, rule and meaning, checked
before torch loads (stage.py) and by the callback on the arguments it is given (callback.py)."""

from dataclasses import dataclass

from compressor import settings as s
from compressor.techniques.prune.settings import SEARCHED


@dataclass
class Sensitivity:
    grid: list | str = s.setting("${budget.grid}", s.fractions(), "the amounts each layer is pruned by, one at a time")
    methods: list = s.setting(["l1_unstructured", "channel"], s.subset(SEARCHED), "the pruning methods scanned")
    quant: bool = s.setting(True, s.boolean(), "the int8 scans (static, torch.ao FX)")
    calibration_batches: int = s.setting(32, s.integer(1), "training batches seen by the int8 observers")
    include: list = s.setting(["*"], s.strings(), "layer-name globs")
    exclude: list = s.setting([], s.strings(), "layer-name globs left out of the scan")
