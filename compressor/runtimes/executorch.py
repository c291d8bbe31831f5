"""ExecuTorch with its XNNPACK backend: the runtime PyTorch models ship on phones, which runs on x86
too. A runtime module (compressor/runtimes/base.py); the optional extra `executorch`.

fp32: torch.export -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> a .pte
file (a flatbuffer program: loading it runs no Python). int8: the float model through torchao's
pt2e with ExecuTorch's XNNPACKQuantizer (symmetric, per-channel weights, static activations),
calibrated on the run's calibration batches, then lowered the same way, so XNNPACK runs int8
kernels. A zero pad before a convolution (EfficientNet-Lite0's TensorFlow "same" padding) is moved
inside the int8 domain first (`int8_pads`), where XNNPACK folds it into the convolution. The batch axis is dynamic up to MAX_BATCH (XNNPACK plans its memory for the largest
batch); a larger input runs in slices of MAX_BATCH."""

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
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # an example of MAX_BATCH images: memory is planned for the example's batch, not the Dim's bound
    x = example[:1].cpu().expand(MAX_BATCH, *example.shape[1:]).contiguous()
    return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))


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

    require()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_exported(model, example).module(), quantizer)
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
