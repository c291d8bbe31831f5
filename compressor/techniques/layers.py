"""Which layers a technique acts on, shared by every technique that chooses layers by name
(prune, cluster, the scans): Conv2d and Linear layers matched by include/exclude globs, the
classifier whose outputs are the classes, and torch's pruning masks folded into the weights."""

import fnmatch

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from compressor.errors import ConfigError


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are. Not `pl_module.device`: in `setup` Lightning already names the
    GPU there while the weights are still on the CPU (a CUDA run traced a CPU model with a GPU input)."""
    return next(model.parameters()).device


WEIGHTED = (nn.Conv2d, nn.Linear)  # the layers techniques act on: their weights are pruned, shared, int8


def weighted(model: nn.Module) -> dict:
    """Every Conv2d and Linear layer, by name, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, WEIGHTED)}


def select_layers(model: nn.Module, include, exclude, key="technique.include") -> dict:
    """Conv and Linear layers whose names match an include glob and no exclude glob."""
    prunable = weighted(model)
    chosen = {
        n: m
        for n, m in prunable.items()
        if any(fnmatch.fnmatchcase(n, g) for g in include) and not any(fnmatch.fnmatchcase(n, g) for g in exclude)
    }
    for glob in include:
        if not any(fnmatch.fnmatchcase(n, glob) for n in prunable):
            raise ConfigError(f"{key} glob {glob!r} matches no prunable layer; layers: {', '.join(prunable)}")
    if not chosen:
        raise ConfigError(
            f"technique.include={list(include)} minus technique.exclude={list(exclude)} leaves no "
            f"layer; layers: {', '.join(prunable)}"
        )
    return chosen


def classifier(model: nn.Module) -> list:
    """The last Linear (as a list, empty if none): its outputs are the classes, so no channel of it goes."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]


def channel_layers(model: nn.Module, layers: dict) -> dict:
    """Layers whose output channels can go: all chosen ones but the classifier (its outputs are the classes)."""
    last = classifier(model)
    return {n: m for n, m in layers.items() if m not in last}


def make_permanent(model: nn.Module) -> None:
    """Fold masks into the weights: no weight_orig/weight_mask or forward pre-hooks remain."""
    for m in model.modules():
        if hasattr(m, "weight_mask"):
            tprune.remove(m, "weight")
