"""technique=quant's per-layer scan, no fine-tuning: for every Conv2d/Linear, the validation
accuracy when only that layer is int8, and when every layer but that one is int8 (static,
per-channel, calibrated like the quant stage). The budget (budget.py) returns layers to float by
it; technique=sensitivity writes it out."""

import copy
import logging

import torch
from torch import nn

from compressor import measure
from compressor.errors import brief
from compressor.techniques.layers import weighted

log = logging.getLogger(__name__)


def int8(model, example_shape, calibration, keep_float=(), only=None, api="fx") -> nn.Module:
    """Static int8 of a copy (torch.ao FX or torchao pt2e), calibrated on the given input batches."""
    from compressor.quant import engine

    flow = engine(api)
    prepared = flow.prepare_static(copy.deepcopy(model).cpu(), torch.randn(*example_shape), keep_float, only)
    with torch.no_grad():
        for x in calibration:
            prepared(x.cpu())
    return flow.convert(prepared)


def quant_scan(model, loader, calibration, layers: list[str], example_shape, api="fx") -> list[dict]:
    base = measure.accuracy_of(model, loader)
    try:
        full = measure.accuracy_of(int8(model, example_shape, calibration, api=api), loader)
    except Exception as exc:  # FX cannot trace every architecture
        log.warning("sensitivity (int8): skipping the quantization scan, the model does not quantize (%s)", brief(exc))
        return []
    rows = [
        {
            "kind": "quant",
            "method": "int8_all",
            "layer": "*",
            "amount": None,
            "val/acc": full,
            "drop": 100 * (base - full),
        }
    ]
    for name in layers:
        try:
            only = measure.accuracy_of(int8(model, example_shape, calibration, only=name, api=api), loader)
            but = measure.accuracy_of(int8(model, example_shape, calibration, keep_float=[name], api=api), loader)
        except Exception as exc:
            log.warning("sensitivity (int8): skipping %s (%s)", name, brief(exc))
            continue
        rows += [
            {
                "kind": "quant",
                "method": "int8_only",
                "layer": name,
                "amount": None,
                "val/acc": only,
                "drop": 100 * (base - only),
            },
            {
                "kind": "quant",
                "method": "int8_all_but",
                "layer": name,
                "amount": None,
                "val/acc": but,
                "drop": 100 * (base - but),
            },
        ]
    return rows


def quant_layers(model: nn.Module, layers) -> list[str]:
    return [n for n in weighted(model) if n in layers]
