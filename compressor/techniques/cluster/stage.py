"""technique=cluster: weight sharing (Deep Compression), per-layer k-means into 2**bits values
and fine-tuning of the shared values (compressor.callbacks.Clustering). `RULES` is the one place
its rules live (the callback checks its arguments with them)."""
from compressor import rules
from compressor.stages.base import CallbackStage

RULES = {"bits": rules.integer(1, 8), "include": rules.strings(), "exclude": rules.strings()}


class Cluster(CallbackStage):
    rules = RULES

    def label(self, cfg) -> str:
        return f"cluster {self.node.bits} bits"
