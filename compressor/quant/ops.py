"""Quantization primitives shared by the quant stage, the artifact format, the runtimes and the
budget: the fp16/bf16 wrapper, calibration inputs, and torchao's dynamic int8. Nothing here knows
about Lightning or a stage."""

import itertools

import torch
from torch import nn

CAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class Cast(nn.Module):
    """Runs a half-precision model on float32 inputs and returns float32 logits."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x):
        return self.model(x.to(self.dtype)).float()


def calibration_inputs(loader, batches: int):
    """The inputs of the first `batches` batches of a loader: what int8 observers calibrate on."""
    return (batch[0] for batch in itertools.islice(loader, batches))  # a batch may carry a teacher's logits


def torchao_dynamic(model: nn.Module) -> nn.Module:
    """int8 weights and dynamically quantized int8 activations for every Linear (torchao, int8 matmul)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, _: isinstance(m, nn.Linear))
    return model
