"""Static and QAT int8 on torchao's pt2e, the maintained successor of torch.ao FX (fx.py):
torch.export -> prepare_pt2e / prepare_qat_pt2e (X86InductorQuantizer: per-channel weights,
conv-bn folding, conv+add+relu fusion) -> calibrate or train -> convert_pt2e. Its converted graph
holds int8 weights between quantize/dequantize ops; `Int8Graph` runs it through torchao's x86
lowering (inductor's freezing passes), which replaces each q/dq pattern with oneDNN int8 conv and
linear kernels (onednn.qconv_pointwise, qlinear_pointwise), without generating C++.

The same functions as fx.py (prepare_static, prepare_qat, convert, float_layers, mark, rebuild),
so the quant stage, the artifact format and the budget pick either by name (compressor.quant.engine).

Two facts of the versions in use (torch 2.14, torchao 0.18), worked around here:
- export is strict (TorchDynamo). Non-strict export, torch's default, groups every call of one
  module into one source partition, and X86InductorQuantizer then raises `Input partition has
  more than one output node` on any module called twice: torchvision's BasicBlock applies its one
  `self.relu` after bn1 and after the residual add (pytorch/ao#4478 reports it for nn.Linear; its
  fix, pytorch/ao#4480, covers linear only, not conv + add + relu).
- activation scales are literals in the converted graph, not tensors, so `mark` records them and
  `rebuild` writes them back: a state dict alone does not restore a pt2e model."""

import copy
import types

import torch
from torch import nn

PER_TENSOR = ("quantize_per_tensor", "dequantize_per_tensor")
WEIGHTED = ("aten.conv2d.default", "aten.linear.default", "aten.conv1d.default", "aten.conv3d.default")


def _quantizer(model: nn.Module, qat: bool, keep_float=(), only=None):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config(is_qat=qat)
    quantizer = X86InductorQuantizer()
    if only is not None:  # int8 for that one layer alone (the budget's sensitivity scan)
        return quantizer.set_module_name_qconfig(only, config)
    quantizer.set_global(config)
    for name in keep_float:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def export(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The model as an aten graph with a dynamic batch dimension (an example of batch 1 would
    make export specialise it: it is widened to 2)."""
    example = example.expand(max(2, example.shape[0]), *example.shape[1:]).contiguous()
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=True).module()


def _train_eval(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Lightning calls .train() and .eval() on the model, which an exported graph refuses: here they
    switch the graph's dropout and batch norm ops (torchao's allow_exported_model_train_eval does
    the same, but its eval() returns None where nn.Module's returns the module)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    def train(self, mode: bool = True):
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self)
        self.training = mode
        return self

    prepared.train = types.MethodType(train, prepared)
    prepared.eval = types.MethodType(lambda self: self.train(False), prepared)
    return prepared


def prepare_static(model: nn.Module, example: torch.Tensor, keep_float=(), only=None) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    return _train_eval(prepare_pt2e(export(model.eval(), example), _quantizer(model, False, keep_float, only)))


def prepare_qat(model: nn.Module, example: torch.Tensor, keep_float=()) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    return _train_eval(prepare_qat_pt2e(export(model.train(), example), _quantizer(model, True, keep_float)))


def convert(prepared: nn.Module) -> nn.Module:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared = prepared.cpu()
    move_exported_model_to_eval(prepared)  # in place: dropout and batch norm ops to their eval form
    graph = convert_pt2e(prepared)
    _drop_unused(graph)
    return Int8Graph(graph)


def _drop_unused(graph: torch.fx.GraphModule) -> None:
    """Folding conv-bn and quantizing weights leaves the float weights behind as attributes no node
    reads: without this the artifact would store every weight twice, float and int8."""
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for key in [k for k in graph.state_dict() if k not in used]:
        owner, _, attr = key.rpartition(".")
        module = graph.get_submodule(owner) if owner else graph
        module._parameters.pop(attr, None)
        module._buffers.pop(attr, None)


class Int8Graph(nn.Module):
    """A converted pt2e graph, run through the x86 lowering at each input shape it meets (once per
    shape, a second or so; the lowered copies hold prepacked weights and are not saved)."""

    def __init__(self, graph: torch.fx.GraphModule):
        super().__init__()
        self.graph = graph
        self._lowered: dict = {}

    def train(self, mode: bool = True):  # an int8 graph has one mode; Lightning's .train() is a no-op
        self.training = False
        return self

    @torch.no_grad()
    def forward(self, x):
        key = (tuple(x.shape), x.dtype)
        if key not in self._lowered:
            from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

            self._lowered[key] = _reshape_views(lower_pt2e_quantized_to_x86(self.graph, (x,)))
        return self._lowered[key](x)

    def _load_from_state_dict(self, *args, **kwargs):
        self._lowered.clear()  # new weights: lower again
        super()._load_from_state_dict(*args, **kwargs)

    def __deepcopy__(self, memo):
        copied = Int8Graph(copy.deepcopy(self.graph, memo))
        copied.compressor_recipe = copy.deepcopy(getattr(self, "compressor_recipe", None), memo)
        return copied


def _reshape_views(lowered: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """oneDNN's int8 conv returns channels-last tensors, and the graph's views (nn.Flatten) were
    traced on contiguous ones: `view` then fails on SimpleCNN's 4x4 maps. reshape copies where needed."""
    for node in lowered.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    lowered.recompile()
    return lowered


def _activation_quantizers(graph: torch.fx.GraphModule) -> list:
    """The per-tensor quantize/dequantize nodes, in graph order: their scale and zero point are literals."""
    return [n for n in graph.graph.nodes if n.op == "call_function" and str(n.target).split(".")[1] in PER_TENSOR]


def qparams(graph: torch.fx.GraphModule) -> list[list]:
    return [[float(n.args[1]), int(n.args[2])] for n in _activation_quantizers(graph)]


def set_qparams(graph: torch.fx.GraphModule, values: list[list]) -> None:
    nodes = _activation_quantizers(graph)
    if len(nodes) != len(values):
        raise ValueError(f"the int8 graph has {len(nodes)} activation quantizers, the artifact {len(values)}")
    for node, (scale, zero) in zip(nodes, values):
        node.args = (node.args[0], scale, zero, *node.args[3:])
    graph.recompile()


def float_layers(converted: nn.Module) -> list[str]:
    """Conv/Linear layers whose weight was not quantized (kept float)."""
    out = []
    for node in converted.graph.graph.nodes:
        if node.op == "call_function" and str(node.target) in WEIGHTED:
            weight = node.args[1]
            if not (isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target)):
                stack = list(node.meta.get("nn_module_stack", {}).values())
                out.append(stack[-1][0] if stack else node.name)
    return out


def mark(converted: nn.Module, mode: str, example_shape, keep_float=()) -> nn.Module:
    """Record how the int8 graph was made and its activation scales, so an artifact can rebuild it."""
    converted.compressor_recipe = {
        "api": "pt2e",
        "mode": mode,
        "example_shape": list(example_shape),
        "keep_float": list(keep_float),
        "qparams": qparams(converted.graph),
    }
    return converted


def rebuild(float_model: nn.Module, recipe: dict) -> nn.Module:
    """The same int8 graph as the one saved, its activation scales written back; the tensors
    (int8 weights, per-channel scales, biases) are for load_state_dict to fill."""
    example = torch.zeros(recipe["example_shape"])
    prepare = prepare_qat if recipe["mode"] == "qat" else prepare_static
    with torch.no_grad():  # placeholders: zero weights and variances would make QAT's folded batch norm 0/0
        for t in [*float_model.parameters(), *float_model.buffers()]:
            if t.is_floating_point():
                t.fill_(1.0)
    prepared = prepare(float_model, example, recipe.get("keep_float", []))
    with torch.no_grad():  # one pass sizes the per-channel weight scales (an unseen observer has one)
        prepared(example)
    converted = convert(prepared)
    set_qparams(converted.graph, recipe["qparams"])
    return mark(converted, recipe["mode"], recipe["example_shape"], recipe.get("keep_float", []))
