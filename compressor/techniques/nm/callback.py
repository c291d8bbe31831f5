"""N:M semi-structured sparsity (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks";
NVIDIA's ASP): in every group of m consecutive weights along a layer's inputs, the n of largest
magnitude are kept and the rest are zero, so 2:4 is exactly half the weights, in the one pattern
that Ampere-and-later sparse tensor cores (torch's `to_sparse_semi_structured`) and some NPUs run
at up to twice the dense speed. On a CPU the win is the file: the zeros are stored as a mask.

Groups run along the input channels (a Conv2d's weight seen as [out, kh, kw, in], as ASP does), so
a layer is chosen only where its inputs split into groups of m: a first convolution on 1 or 3
channels keeps all its weights and is listed in the summary as skipped. The mask is set once in
`setup`, from the stage's input weights (so a resumed fit sets the same mask), and folded into the
weights at the end: the saved model is a plain float model with n of every m weights zero."""

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques.callback import TechniqueCallback
from compressor.techniques.layers import make_permanent, select_layers
from compressor.techniques.nm import settings as spec
from compressor.techniques.shared import FIT


def groups_of(weight: torch.Tensor, m: int) -> torch.Tensor | None:
    """The weight as rows of m consecutive inputs, or None when its inputs do not split into m."""
    rows = weight.permute(0, 2, 3, 1) if weight.dim() == 4 else weight  # a conv's inputs last
    return rows.reshape(-1, m) if rows.shape[-1] % m == 0 else None


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor | None:
    """1 for the n largest |w| of each group of m inputs, 0 for the rest (None: no such groups)."""
    rows = groups_of(weight.detach(), m)
    if rows is None:
        return None
    keep = torch.zeros_like(rows).scatter_(1, rows.abs().topk(n, dim=1).indices, 1.0)
    if weight.dim() == 4:
        out, cin, kh, kw = weight.shape
        return keep.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return keep.reshape(weight.shape)


class NMSparsity(TechniqueCallback):
    """One stage: an n:m mask on each chosen Conv2d and Linear layer whose inputs split into groups
    of m (setup), fine-tuning with the masked weights held at zero, the mask folded in (fit end)."""

    def __init__(self, **settings):
        """`settings`: the keys of settings.NM (n, m, include, exclude), each checked."""
        values = s.make(spec.NM, settings, leave_out=FIT)
        spec.check(values)
        s.assign(self, values)
        self.masked: list[str] = []
        self.skipped: list[str] = []

    def masks(self, model: nn.Module) -> dict:
        """{layer name: its mask, or None where the layer is skipped} of the chosen layers; one line
        when no chosen layer can take the pattern (nothing would change)."""
        out = {}
        for name, layer in select_layers(model, self.include, self.exclude).items():
            grouped = layer.weight.dim() == 4 and layer.groups != 1  # depthwise: too few inputs per output
            out[name] = None if grouped else nm_mask(layer.weight, self.n, self.m)
        if all(mask is None for mask in out.values()):
            raise ConfigError(
                f"technique.m={self.m}: no chosen layer's inputs split into groups of {self.m} "
                f"(layers: {', '.join(out)}); choose a smaller m or other technique.include globs"
            )
        return out

    def check(self, model: nn.Module) -> None:
        self.masks(model)

    def apply(self, model: nn.Module) -> None:
        """Mask every chosen layer (torch's pruning containers: weight_orig * weight_mask)."""
        self.masked, self.skipped = [], []
        layers = dict(model.named_modules())
        for name, mask in self.masks(model).items():
            if mask is None:
                self.skipped.append(name)
                continue
            tprune.custom_from_mask(layers[name], "weight", mask)
            self.masked.append(name)

    def setup(self, trainer, pl_module, stage):
        if stage == "fit":
            self.apply(pl_module.model)

    def on_fit_end(self, trainer, pl_module):
        make_permanent(pl_module.model)

    def summary(self) -> dict:
        return {"n": self.n, "m": self.m, "layers": list(self.masked), "skipped": list(self.skipped)}
