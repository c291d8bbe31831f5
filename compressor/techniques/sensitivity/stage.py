"""technique=sensitivity: per-layer scans of the trained model, no fine-tuning (callback.py runs
them as a zero-epoch fit)."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.sensitivity import settings as spec


class Sensitivity(CallbackStage):
    settings = spec.Sensitivity
    trains = False
    recovers = False
    in_table = False  # a scan compresses nothing: its plots, not a row
    callback_class = "compressor.techniques.sensitivity.callback.Sensitivity"

    def label(self, cfg) -> str:
        return "sensitivity scan"

    @classmethod
    def summarize(cls, runs, out) -> str:
        from compressor.techniques.sensitivity.report import plots

        return plots(runs, out)
