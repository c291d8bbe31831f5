"""technique=cluster: weight sharing (Deep Compression), per-layer k-means into 2**bits values
and fine-tuning of the shared values (callback.py: Clustering)."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.cluster import settings as spec
from compressor.techniques.dimension import Dimension


def sampled(search, model, conf) -> list[str]:
    """4-bit sharing is sampled for objective=size alone: its shared values are float weights in every
    exported file, run by the same float kernels as the point without it, in files no smaller, at
    lower accuracy, so it cannot win on latency, and its fine-tune is a first rung's dearest trial
    (docs/search.md gives the measurements)."""
    return ["cluster"] if "cluster" in search.precisions and search.objective == "size" else []


class Cluster(CallbackStage):
    settings = spec.Cluster
    callback_class = "compressor.techniques.cluster.callback.Clustering"
    dimension = Dimension(
        "precision",
        "fp32",
        sampled,
        shortened=True,
        anchor=True,
        choices=("cluster",),
        keeps_none=lambda search: "fp32" in search.precisions,
    )

    def label(self, cfg) -> str:
        return f"cluster {self.node.bits} bits"
