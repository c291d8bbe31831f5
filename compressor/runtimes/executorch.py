"""ExecuTorch with its XNNPACK backend: the runtime PyTorch models ship on phones, which runs on x86
too. A runtime module (compressor/runtimes/base.py); the optional extra `executorch`.

fp32: torch.export -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> a .pte
file (a flatbuffer program: loading it runs no Python). int8: the float model through torchao's
pt2e with ExecuTorch's XNNPACKQuantizer (symmetric, per-channel weights, static activations),
calibrated on the run's calibration batches, then lowered the same way, so XNNPACK runs int8
kernels. An adaptive average pool whose windows overlap (SimpleCNN's 7x7 -> 4x4), for which
XNNPACK has no kernel, is folded into the linear layer after it (`fold_pool`). A zero pad before a
convolution (EfficientNet-Lite0's TensorFlow "same" padding) is moved inside the int8 domain first
(`int8_pads`), where XNNPACK folds it into the convolution. An observer read only by ReLU6
calibrates on the clamped values (compressor.quant.ops.clamped_observers). The batch axis is
dynamic up to MAX_BATCH (XNNPACK plans its memory for the largest batch); a larger input runs in
slices of MAX_BATCH."""

import os
from pathlib import Path

from compressor.runtimes.base import RuntimeModel, installed, one_line

FILES = {"fp32": "model.pte", "int8": "model.int8.pte"}
STATIC = False
MODES = ("static",)
WITHIN = None
MAX_BATCH = 64  # the largest batch the search and the report time


def require() -> None:
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError as exc:
        raise one_line(exc, "executorch") from None


def version() -> str:
    return installed("executorch")


def _exported(model, example, float_model: bool = True):
    import copy

    import torch

    if float_model:  # a copy, contiguous (XNNPACK's layout pass expects NCHW weights; a fit may leave
        # them channels-last) and in eval form (a converted pt2e graph already is, and refuses .eval())
        model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
        fold_pool(model, example)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # an example of MAX_BATCH images: memory is planned for the example's batch, not the Dim's bound
    x = example[:1].cpu().expand(MAX_BATCH, *example.shape[1:]).contiguous()
    return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))


def _windows(size: int, out: int):
    """AdaptiveAvgPool's averaging along one axis as an (out, size) matrix: row i averages the inputs
    floor(i*size/out) to ceil((i+1)*size/out)."""
    import torch

    m = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -(-(i + 1) * size // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def fold_pool(model, example) -> int:
    """Fold each `features` -> `flatten` -> `classifier` net's closing nn.AdaptiveAvgPool2d into the
    classifier's first nn.Linear, in place, where the pool's windows overlap (its input not a multiple
    of its output; a global pool stays): a linear map into a linear layer, exact in float.

    XNNPACK has no kernel for such a pool, so it runs on ExecuTorch's portable kernel between two
    delegated parts, in float. On SimpleCNN (7x7 -> 4x4) that pool took about a third of the int8
    file's time at b64; folded, the file ran 1.31-1.35x faster at b64 and 0.97-0.98x at b1 (the
    linear reads 49/16 as many inputs). Returns how many pools were folded."""
    import torch
    from torch import nn

    folded = 0
    for net in list(model.modules()):
        features, classifier = getattr(net, "features", None), getattr(net, "classifier", None)
        if not (
            isinstance(features, nn.Sequential)
            and len(features)
            and isinstance(features[-1], nn.AdaptiveAvgPool2d)
            and isinstance(getattr(net, "flatten", None), nn.Flatten)
            and isinstance(classifier, nn.Sequential)
            and isinstance(classifier[0], nn.Linear)
        ):
            continue
        pool, seen = features[-1], []
        handle = pool.register_forward_hook(lambda m, args, out: seen.append((args[0].shape, out.shape)))
        with torch.no_grad():
            model(example[:1].cpu())
        handle.remove()
        (h, w), (oh, ow) = seen[0][0][-2:], seen[0][1][-2:]
        if (oh, ow) == (1, 1) or (h % oh == 0 and w % ow == 0):
            continue  # a global pool or whole windows: XNNPACK runs them
        linear = classifier[0]
        channels = linear.in_features // (oh * ow)
        pooling = torch.kron(_windows(h, oh), _windows(w, ow))  # (oh*ow, h*w)
        wide = nn.Linear(channels * h * w, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            weight = linear.weight.reshape(linear.out_features, channels, oh * ow) @ pooling
            wide.weight.copy_(weight.reshape(linear.out_features, -1))
            if linear.bias is not None:
                wide.bias.copy_(linear.bias)
        net.features, classifier[0] = features[:-1], wide
        folded += 1
    return folded


def _save(program, path) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    lowered = edge.to_executorch()
    tmp = path.with_name(f".tmp.{path.name}")
    tmp.write_bytes(lowered.buffer)
    os.replace(tmp, path)
    return path


def export(model, example, path) -> Path:
    require()
    return _save(_exported(model, example), path)


def int8(model, example, calibration, fp32, path, mode: str = "static", within=None) -> Path:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from compressor.quant.ops import clamped_observers  # imports torch: not at registry time

    require()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_exported(model, example).module(), quantizer)
    clamped_observers(prepared)  # XNNPACKQuantizer fuses conv + ReLU, not conv + ReLU6
    with torch.no_grad():
        for x in calibration:
            for i in range(0, len(x), MAX_BATCH):
                prepared(x[i : i + MAX_BATCH].cpu())
    converted = convert_pt2e(prepared)
    int8_pads(converted)
    return _save(_exported(converted, example, float_model=False), path)


QUANTIZE = "quantized_decomposed.quantize_per_tensor.default"
DEQUANTIZE = "quantized_decomposed.dequantize_per_tensor.default"


def _zero_pad(node) -> bool:
    import torch

    aten = torch.ops.aten
    if node.op != "call_function" or node.target not in (aten.pad.default, aten.constant_pad_nd.default):
        return False
    value_at = 3 if node.target is aten.pad.default else 2
    mode = node.args[2] if node.target is aten.pad.default and len(node.args) > 2 else "constant"
    value = node.args[value_at] if len(node.args) > value_at else node.kwargs.get("value")
    return mode == "constant" and not value


def int8_pads(graph) -> int:
    """Run each zero pad that feeds a quantized op on int8 values: XNNPACKQuantizer leaves it as
    dequantize -> float pad -> quantize, which XNNPACK runs as two conversions around a float copy
    (on Lite0 at 48x48, about 8% of its int8 time at b1 and b64). The quantize/dequantize after
    the pad is removed, and a float input is quantized before it instead, so the convolution reads
    the pad of an int8 tensor, which XNNPACK's convolution takes into its own padding. Zero is
    exact on every int8 grid, so the pad changes no value; the convolution reads its input on the
    grid it came on, not requantized. Returns how many pads were moved."""
    moved = 0
    for pad in list(graph.graph.nodes):
        if not _zero_pad(pad) or len(pad.users) != 1:
            continue
        (q,) = pad.users
        if str(q.target) != QUANTIZE or not all(str(u.target) == DEQUANTIZE for u in q.users):
            continue
        source, dequantize = pad.args[0], next(iter(q.users))
        if str(getattr(source, "target", None)) != DEQUANTIZE:  # a float input: quantize it before the pad
            with graph.graph.inserting_before(pad):
                q_before = graph.graph.call_function(q.target, (source, *q.args[1:]), dict(q.kwargs))
                dq_before = graph.graph.call_function(
                    dequantize.target, (q_before, *dequantize.args[1:]), dict(dequantize.kwargs)
                )
            q_before.meta, dq_before.meta = dict(q.meta), dict(dequantize.meta)
            pad.replace_input_with(source, dq_before)
        for user in list(q.users):
            user.replace_all_uses_with(pad)
            graph.graph.erase_node(user)
        graph.graph.erase_node(q)
        moved += 1
    graph.graph.lint()
    graph.recompile()
    return moved


class ExecuTorchModel(RuntimeModel):
    """A .pte program's forward method on ExecuTorch's runtime; inputs above MAX_BATCH run in slices.
    XNNPACK's thread pool is process-wide: opening a model sizes it to `threads` (its default is
    every core), as the other runtimes' threads are pinned."""

    def open(self):
        require()
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if portable_lib._threadpool_get_thread_count() != self.threads:
            portable_lib._unsafe_reset_threadpool(self.threads)  # the only API for it in 1.5 (experimental)
        return Runtime.get().load_program(str(self.path)).load_method("forward")

    def run(self, x):
        import numpy as np
        import torch

        method = self.session()
        parts = [
            method.execute([torch.from_numpy(np.ascontiguousarray(x[i : i + MAX_BATCH]))])[0].numpy()
            for i in range(0, len(x), MAX_BATCH)
        ]
        return np.concatenate(parts)


def load(path, threads: int = 1, static: bool = False) -> ExecuTorchModel:
    require()
    return ExecuTorchModel(path, threads)
