"""Quantization primitives shared by the quant stage, the artifact format, the runtimes and the
budget: the fp16/bf16 wrapper, calibration inputs, observers that calibrate on what a clamp lets
through, and torchao's dynamic int8. Nothing here knows about Lightning or a stage."""

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


CLAMPS = ("aten.hardtanh.default", "aten.hardtanh_.default")  # nn.ReLU6 in an exported (pt2e) graph


def _clamp_bounds(node, modules: dict) -> tuple[float, float] | None:
    """(min, max) of a clamp in a prepared graph (aten.hardtanh in pt2e's, an nn.Hardtanh or
    nn.ReLU6 module or F.relu6 in FX's); None for any other node."""
    if not isinstance(node, torch.fx.Node):
        return None
    if node.op == "call_module":
        module = modules.get(node.target)
        return (float(module.min_val), float(module.max_val)) if isinstance(module, nn.Hardtanh) else None
    if node.op != "call_function":
        return None
    if node.target is nn.functional.relu6:
        return 0.0, 6.0
    if str(node.target) in CLAMPS or node.target is nn.functional.hardtanh:
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
        high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
        return float(low), float(high)
    return None


def clamped_observers(prepared: torch.fx.GraphModule) -> int:
    """Let each observer whose every reader is a clamp (ReLU6: hardtanh(0, 6)) see the values the
    clamp leaves. XNNPACKQuantizer and FX's backend configs (x86, onednn) do not fuse a convolution
    with ReLU6 as they do with ReLU (X86InductorQuantizer, pt2e.py, does): the clamp shares the
    convolution's output observer, which then calibrates on the unclamped outputs, so the int8 grid
    spans their whole range and the [0, 6] that passes the clamp gets a small part of its 256
    steps. Clamping what the observer reads (a forward pre-hook, gone with the observer at convert)
    changes no calibration output, the clamp after it being the same, and values beyond the range
    saturate to the clamp's own bounds. An observer also called elsewhere is hooked only where that
    call reads the same clamp's output (already inside the bounds). Returns how many observers now
    read clamped values (docs/techniques.md: EfficientNet-Lite0)."""
    modules = dict(prepared.named_modules())
    calls: dict = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and hasattr(modules.get(node.target), "calculate_qparams"):  # an observer
            calls.setdefault(node.target, []).append(node)
    clamped = 0
    for target, nodes in calls.items():
        sources = [_clamp_bounds(n.args[0], modules) for n in nodes]  # a clamp's output, or None
        readers = {_clamp_bounds(u, modules) for n, s in zip(nodes, sources) if s is None for u in n.users}
        if len(readers) != 1 or None in readers or not set(sources) - {None} <= readers:
            continue
        ((low, high),) = readers
        modules[target].register_forward_pre_hook(lambda _, args, lo=low, hi=high: (args[0].clamp(lo, hi),))
        clamped += 1
    return clamped


def torchao_dynamic(model: nn.Module) -> nn.Module:
    """int8 weights and dynamically quantized int8 activations for every Linear (torchao, int8 matmul)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, _: isinstance(m, nn.Linear))
    return model
