"""technique=cluster: weight sharing (Deep Compression), per-layer k-means into 2**bits values
and fine-tuning of the shared values (callback.py: Clustering)."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.cluster.rules import RULES


class Cluster(CallbackStage):
    rules = RULES
    callback_class = "compressor.techniques.cluster.callback.Clustering"

    def label(self, cfg) -> str:
        return f"cluster {self.node.bits} bits"
