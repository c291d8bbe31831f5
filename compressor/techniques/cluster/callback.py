"""Weight sharing (Han et al. 2016, "Deep Compression"; TensorFlow Model Optimization calls it
clustering): each chosen layer's non-zero weights are clustered by 1-D k-means into 2**bits
shared values, then fine-tuned with every weight's cluster fixed. A weight is
`codebook[index]`, so a shared value's gradient is the sum of its weights' gradients, as in the
paper. Zeros (a pruned weight) stay zero and out of the clustering, so sharing composes after
pruning. At the end the shared values are written back into plain weights: the model is a
plain float model with at most 2**bits distinct non-zero values per layer, which the artifact
stores as a codebook and bit-packed indices, entropy-coded (compressor/storage/artifact.py)."""

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor import settings as s
from compressor.techniques.callback import TechniqueCallback
from compressor.techniques.cluster import settings as spec
from compressor.techniques.layers import select_layers
from compressor.techniques.shared import FIT

ITERATIONS = 50  # Lloyd iterations at most; 1-D k-means from a linear start settles in far fewer


def kmeans(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted centroids, index of each value's centroid) of 1-D k-means. Centroids start spread
    linearly over [min, max], the start Deep Compression found best: it keeps centroids for the
    few large weights, which matter most. Deterministic; an empty cluster keeps its centroid."""
    values = values.detach().float().flatten()
    k = max(1, min(k, values.numel()))
    centroids = torch.linspace(values.min().item(), values.max().item(), k)
    index = None
    for _ in range(ITERATIONS):
        edges = (centroids[1:] + centroids[:-1]) / 2  # nearest centroid: the midpoints between them
        new = torch.bucketize(values, edges)
        if index is not None and torch.equal(new, index):
            break
        index = new
        sums = torch.zeros(k).index_add_(0, index, values)
        counts = torch.zeros(k).index_add_(0, index, torch.ones_like(values))
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        centroids, order = centroids.sort()
        index = torch.argsort(order)[index]  # keep the indices on the re-sorted centroids
    return centroids, index


class Shared(nn.Module):
    """A parametrization: weight = codebook[index] where the weight was non-zero, else 0."""

    def __init__(self, weight: torch.Tensor, k: int):
        super().__init__()
        mask = weight != 0
        centroids, index = kmeans(weight[mask], k)
        full = torch.zeros(weight.shape, dtype=torch.long)
        full[mask] = index
        self.codebook = nn.Parameter(centroids.to(weight.dtype))
        self.register_buffer("index", full)
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # `original` is only kept, never used
        return self.codebook[self.index] * self.mask


class Clustering(TechniqueCallback):
    """One stage: share the weights of the chosen Conv2d and Linear layers (setup), fine-tune the
    shared values (the stage's epochs), write them back into plain weights (fit end)."""

    def __init__(self, **settings):
        """`settings`: the keys of settings.Cluster (bits, include, exclude), each checked."""
        s.assign(self, s.make(spec.Cluster, settings, leave_out=FIT))
        self.layers: dict[str, int] = {}  # layer -> its shared values

    def check(self, model: nn.Module) -> None:
        select_layers(model, self.include, self.exclude)

    def setup(self, trainer, pl_module, stage):
        if stage != "fit":
            return
        for name, layer in select_layers(pl_module.model, self.include, self.exclude).items():
            if parametrize.is_parametrized(layer, "weight") or not layer.weight.count_nonzero():
                continue
            parametrize.register_parametrization(layer, "weight", Shared(layer.weight.detach(), 2**self.bits))
            # the plain weight is kept, not trained: DDP refuses a parameter that takes no part in the loss
            layer.parametrizations.weight.original.requires_grad_(False)
            self.layers[name] = int(layer.parametrizations.weight[0].codebook.numel())

    def on_fit_end(self, trainer, pl_module):
        for layer in pl_module.model.modules():
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
                layer.weight.requires_grad_(True)  # a plain weight again, trained by the stages after this one

    def summary(self) -> dict:
        return {"bits": self.bits, "shared_values": dict(self.layers)}
