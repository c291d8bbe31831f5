"""technique=prune's per-layer scan, no fine-tuning (Distiller's and NNI's analysis): for every
prunable layer and every amount of a grid, the validation accuracy when only that layer is pruned
(L1 within the layer, or its channels where the layer allows it). The budget (budget.py) orders
its per-layer steps by it; technique=sensitivity writes it out."""

import copy
import logging

import torch
from torch import nn

from compressor import measure
from compressor.errors import brief
from compressor.techniques.layers import channel_layers, make_permanent
from compressor.techniques.prune import cost as costs
from compressor.techniques.prune.callback import Pruning

log = logging.getLogger(__name__)


def pruned(model: nn.Module, method: str, amounts: dict, example_shape) -> nn.Module:
    """A pruned copy: each layer of `amounts` by its amount, nothing else touched."""
    out = copy.deepcopy(model).cpu()
    Pruning(method=method, amounts=amounts, example_shape=example_shape).apply(out, 1.0)
    make_permanent(out)
    return out


def prune_scan(model, loader, layers: list[str], grid, methods, example_shape, cost="macs", threads=1) -> list[dict]:
    """Rows per (method, layer, amount): validation accuracy, drop, MACs, and `saved`: weights
    zeroed (unstructured), or for channels what `cost` counts (cost.py: MACs, or latency measured
    side by side) against the unpruned model."""
    base = measure.accuracy_of(model, loader)
    example = torch.randn(*example_shape)
    base_macs, base_nonzero = measure.macs(model, example), measure.parameters(model)["compress/nonzero_params"]
    rows = []
    for method in methods:
        names = (
            list(channel_layers(model, {n: dict(model.named_modules())[n] for n in layers}))
            if method == "channel"
            else layers
        )
        for name in names:
            copies = {}
            for amount in grid:
                try:
                    m = pruned(model, method, {name: amount}, example_shape)
                    macs = measure.macs(m, example)
                except Exception as exc:  # a layer whose pruned model no longer runs (a ViT's qkv reshape)
                    log.warning(
                        "sensitivity (%s): skipping %s, its pruned model does not run (%s)", method, name, brief(exc)
                    )
                    break
                if method == "channel" and macs == base_macs:
                    continue  # Torch-Pruning keeps a layer whole rather than leave it no channel (e.g. 0.98 of 32)
                copies[float(amount)] = (m, macs)
            if method == "channel":
                saved = costs.saved(cost, model, {a: m for a, (m, _) in copies.items()}, example_shape, threads)
            for amount, (m, macs) in copies.items():
                acc = measure.accuracy_of(m, loader)
                rows.append(
                    {
                        "kind": "prune",
                        "method": method,
                        "layer": name,
                        "amount": amount,
                        "val/acc": acc,
                        "drop": 100 * (base - acc),
                        "compress/macs": macs,
                        "saved": saved[amount]
                        if method == "channel"
                        else base_nonzero - measure.parameters(m)["compress/nonzero_params"],
                    }
                )
    return rows
