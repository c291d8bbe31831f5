"""The one place that uses torch.ao.quantization (FX graph mode), which torch 2.14 still ships but
announces it will remove. Static post-training int8 and quantization-aware training need it on
CPU: torchao's replacement (pt2e) reaches int8 kernels only through torch.compile/inductor.
It gives real x86 (fbgemm/oneDNN) int8 conv and linear kernels with per-channel weights and
conv-bn-relu fusion."""
import warnings

import torch
from torch import nn
from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

ENGINE = "x86"


def prepare_static(model: nn.Module, example: torch.Tensor) -> nn.Module:
    torch.backends.quantized.engine = ENGINE
    return prepare_fx(model.eval(), get_default_qconfig_mapping(ENGINE), (example,))


def prepare_qat(model: nn.Module, example: torch.Tensor) -> nn.Module:
    torch.backends.quantized.engine = ENGINE
    return prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping(ENGINE), (example,))


def convert(prepared: nn.Module) -> nn.Module:
    return convert_fx(prepared.cpu().eval())


def float_layers(converted: nn.Module) -> list[str]:
    """Conv/Linear layers that stayed float after conversion."""
    return [n for n, m in converted.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def mark(converted: nn.Module, mode: str, example_shape) -> nn.Module:
    """Record how the int8 graph was made, so an artifact can rebuild it (see artifact.load)."""
    converted.compressor_recipe = {"mode": mode, "example_shape": list(example_shape)}
    return converted


def rebuild(float_model: nn.Module, recipe: dict) -> nn.Module:
    """The same int8 graph as the one saved, with placeholder values for load_state_dict to fill.
    Its observers never ran, which torch.ao warns about once per layer: here that is expected, as
    the saved scales replace the placeholders, so only this call silences that one message."""
    example = torch.zeros(recipe["example_shape"])
    prepare = prepare_qat if recipe["mode"] == "qat" else prepare_static
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")
        return mark(convert(prepare(float_model, example)), recipe["mode"], recipe["example_shape"])
