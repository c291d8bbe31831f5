"""The one place that uses torch.ao.quantization (FX graph mode), which torch 2.14 still ships but
announces it will remove. Static post-training int8 and quantization-aware training need it on
CPU: torchao's replacement (pt2e) reaches int8 kernels only through torch.compile/inductor.
It gives real x86 (fbgemm/oneDNN) int8 conv and linear kernels with per-channel weights and
conv-bn-relu fusion."""

import warnings

import torch
from torch import nn
from torch.ao.quantization import QConfigMapping, get_default_qat_qconfig_mapping, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

from compressor.quant.ops import clamped_observers

ENGINE = "x86"  # fbgemm/oneDNN dispatch: the measured default (SimpleCNN, ResNet-18)


def engine_for(model: nn.Module) -> str:
    """The int8 engine for this net. Nets with grouped (depthwise) convolutions get oneDNN's own
    kernels and its qconfig (8-bit activations, where x86's reduce to 7): on EfficientNet-Lite0, x86's
    int8 lost far more accuracy and ran slower than fp32, oneDNN's did neither (docs/techniques.md,
    experiments/README.md "EfficientNet-Lite0"). SimpleCNN runs as fast on either, so the others keep x86."""
    grouped = any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())
    return "onednn" if grouped else ENGINE


def with_followers(model: nn.Module, names) -> list[str]:
    """Each layer with the weightless modules after it up to the next branch or weighted layer
    (batch norm, activation, dropout, pooling): int8 would otherwise quantize the layer's output
    there anyway, in the ReLU fused with it or just after it."""
    if not names:
        return []
    modules = dict(model.named_modules())
    out = list(names)
    for node in torch.fx.symbolic_trace(model).graph.nodes:
        if node.op != "call_module" or node.target not in names:
            continue
        while len(node.users) == 1:
            node = next(iter(node.users))
            module = modules.get(node.target) if node.op == "call_module" else None
            weighted = module is not None and next(module.parameters(), None) is not None
            if module is None or (weighted and not isinstance(module, nn.modules.batchnorm._BatchNorm)):
                break
            out.append(node.target)
    return list(dict.fromkeys(out))


def mapping(model: nn.Module, default: QConfigMapping, keep_float=(), only=None) -> QConfigMapping:
    """int8 everywhere but the `keep_float` layers (and what follows each, see with_followers); or,
    with `only`, int8 for that one layer alone."""
    if only is not None:
        chosen = QConfigMapping()
        for name in with_followers(model, [only]):
            chosen.set_module_name(name, default.global_qconfig)
        return chosen
    for name in with_followers(model, list(keep_float)):
        default.set_module_name(name, None)
    return default


def prepare_static(model: nn.Module, example: torch.Tensor, keep_float=(), only=None, engine=None) -> nn.Module:
    engine = engine or engine_for(model)
    torch.backends.quantized.engine = engine
    chosen = mapping(model, get_default_qconfig_mapping(engine), keep_float, only)
    prepared = prepare_fx(model.eval(), chosen, (example,))
    clamped_observers(prepared)  # ReLU6 shares the conv's output observer (ops.clamped_observers)
    prepared.compressor_engine = engine
    return prepared


def prepare_qat(model: nn.Module, example: torch.Tensor, keep_float=(), engine=None) -> nn.Module:
    engine = engine or engine_for(model)
    torch.backends.quantized.engine = engine
    prepared = prepare_qat_fx(
        model.train(), mapping(model, get_default_qat_qconfig_mapping(engine), keep_float), (example,)
    )
    prepared.compressor_engine = engine
    return prepared


def convert(prepared: nn.Module) -> nn.Module:
    """int8 kernels packed for the engine the model was prepared for (they then run under any)."""
    engine = getattr(prepared, "compressor_engine", ENGINE)
    torch.backends.quantized.engine = engine
    converted = convert_fx(prepared.cpu().eval())
    converted.compressor_engine = engine
    return converted


def float_layers(converted: nn.Module) -> list[str]:
    """Conv/Linear layers that stayed float after conversion."""
    return [n for n, m in converted.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def mark(converted: nn.Module, mode: str, example_shape, keep_float=()) -> nn.Module:
    """Record how the int8 graph was made, so an artifact can rebuild it (see artifact.load)."""
    converted.compressor_recipe = {
        "mode": mode,
        "example_shape": list(example_shape),
        "keep_float": list(keep_float),
        "engine": getattr(converted, "compressor_engine", ENGINE),
    }
    return converted


def rebuild(float_model: nn.Module, recipe: dict) -> nn.Module:
    """The same int8 graph as the one saved, with placeholder values for load_state_dict to fill.
    Its observers never ran, which torch.ao warns about once per layer: here that is expected, as
    the saved scales replace the placeholders, so only this call silences that one message."""
    example = torch.zeros(recipe["example_shape"])
    prepare = prepare_qat if recipe["mode"] == "qat" else prepare_static
    keep_float = recipe.get("keep_float", [])  # absent in artifacts written before budgets
    engine = recipe.get("engine", ENGINE)  # absent in artifacts written before the engine was chosen per net
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")
        return mark(
            convert(prepare(float_model, example, keep_float, engine=engine)),
            recipe["mode"],
            recipe["example_shape"],
            keep_float,
        )
