from compressor.report.callback import SweepReport

__all__ = ["SweepReport"]
