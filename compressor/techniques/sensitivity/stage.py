"""technique=sensitivity: per-layer scans of the trained model, no fine-tuning
(compressor.search.sensitivity.Sensitivity runs them as a zero-epoch fit)."""
from compressor import choices, rules
from compressor.stages.base import CallbackStage

RULES = {"grid": rules.fractions(), "methods": rules.subset(choices.SCAN_METHODS), "quant": rules.boolean(),
         "calibration_batches": rules.integer(1), "include": rules.strings(), "exclude": rules.strings()}


class Sensitivity(CallbackStage):
    rules = RULES
    trains = False
    recovers = False

    def label(self, cfg) -> str:
        return "sensitivity scan"
