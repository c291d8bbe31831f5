"""OpenVINO: IR export (openvino.convert_model), NNCF post-training int8 (nncf.quantize, or
nncf.quantize_with_accuracy_control under an accuracy budget) and a compiled model that behaves
like a torch model. openvino and nncf are optional extras, imported only here and only when used.

An IR is two files, model.xml (the graph, plain XML) and model.bin (raw weights); loading one
runs no code. Weights are saved in float32 (compress_to_fp16=False), so an fp32 IR computes what
the PyTorch model computes; an NNCF IR holds int8 weights with their scales."""

import logging
import os
from pathlib import Path

from compressor.runtimes.base import RuntimeModel, installed, one_line

FILES = {"fp32": "model.xml", "int8": "model.int8.xml"}
STATIC = True
MODES = ("static",)
WITHIN = "nncf.quantize_with_accuracy_control"


def require():
    """openvino and nncf, or a one-line error naming the missing extra."""
    try:
        import nncf
        import openvino
    except ImportError as exc:
        raise one_line(exc, "openvino") from None
    nncf.set_log_level(logging.ERROR)
    return openvino, nncf


def version() -> str:
    return installed("openvino")


def files(xml) -> list[Path]:
    xml = Path(xml)
    return [xml, xml.with_suffix(".bin")]


def save(ov_model, xml) -> Path:
    """Write model.xml/model.bin through temporary names, so a failed write leaves no half IR."""
    ov, _ = require()
    xml = Path(xml)
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = xml.with_name(f".tmp.{xml.name}")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
    for src, dst in zip(files(tmp), files(xml)):
        os.replace(src, dst)
    return xml


def convert(model, example):
    """An in-memory ov.Model of a float torch model, batch axis dynamic."""
    ov, _ = require()
    ov_model = ov.convert_model(model.cpu().eval(), example_input=example[:1].cpu())
    shape = ov.PartialShape([-1, *example.shape[1:]])
    ov_model.reshape({ov_model.inputs[0]: shape})
    return ov_model


def export(model, example, path) -> Path:
    return save(convert(model, example), path)


def int8(model, example, calibration, fp32, path, mode: str = "static", within=None) -> Path:
    """NNCF post-training int8 of the fp32 IR on `calibration` input batches (all of them).

    With `within` = (validation loader of (x, y), max_drop in accuracy points), NNCF's accuracy
    control quantizes, then returns the layers that cost most to float until the validation
    drop is within `max_drop`: the same budget as budget.max_drop."""
    ov, _ = require()
    ov_model = ov.Core().read_model(str(fp32))
    return save(_int8(ov_model, calibration, *(within or ())), path)


def _int8(ov_model, calibration, validation=None, max_drop: float | None = None):
    import numpy as np

    _, nncf = require()
    calibration = list(calibration)
    data = nncf.Dataset([b.cpu().numpy().astype(np.float32) for b in calibration])
    if max_drop is None:
        return nncf.quantize(ov_model, data, subset_size=len(calibration))
    pairs = [(x.cpu().numpy().astype(np.float32), y.numpy()) for x, y in validation]
    val = nncf.Dataset(pairs, lambda item: item[0])

    def validate(compiled, items) -> float:
        right = total = 0
        for x, y in items:
            logits = compiled(x)[0]
            right += int((np.argmax(logits, axis=1) == y).sum())
            total += len(y)
        return right / total

    return nncf.quantize_with_accuracy_control(
        ov_model,
        data,
        val,
        validate,
        max_drop=max_drop / 100,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(calibration),
    )


class OpenVinoModel(RuntimeModel):
    """A compiled IR on the CPU plugin. Threads are pinned like torch's when timing (one stream,
    latency hint); float ops run in float32 (no bf16 down-cast on CPUs that have it), int8 ops in int8.

    static=True compiles the IR once per input shape with that shape fixed (model.reshape), as a
    user who knows the batch size deploys it; the default keeps the IR's dynamic batch axis.
    own_precision=True leaves the float precision to OpenVINO, as its default compile does (bf16 on
    CPUs with AMX): the peer a user gets without compressor (experiments/peer.py)."""

    def __init__(self, path, threads: int = 1, static: bool = False, own_precision: bool = False):
        super().__init__(path, threads, static)
        self.own_precision = own_precision
        self._compiled = {}  # input shape -> compiled model (static)

    def open(self):
        ov, _ = require()
        return ov.Core()

    def compile(self, shape=None):
        ov, _ = require()
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            **({} if self.own_precision else {"INFERENCE_PRECISION_HINT": "f32"}),
        }
        core = self.session()
        if shape is None:
            return core.compile_model(str(self.path), "CPU", config)
        model = core.read_model(str(self.path))
        model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
        return core.compile_model(model, "CPU", config)

    def computes_in(self) -> str:
        """The compiled model's float precision (OpenVINO picks bf16 by itself on CPUs with AMX unless
        told f32, as here) and how many of its ops run in int8 (runtimePrecision i8/u8)."""
        compiled = self.compile()
        ops = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
        int8 = sum(str(rt["runtimePrecision"].astype(str)) in ("i8", "u8") for rt in ops if "runtimePrecision" in rt)
        hint = str(compiled.get_property("INFERENCE_PRECISION_HINT")).split("'")[1]
        return f"{hint}, {int8} of {len(ops)} ops int8"

    def run(self, x):
        key = tuple(x.shape) if self.static else None
        if key not in self._compiled:
            self._compiled[key] = self.compile(key)
        return self._compiled[key](x)[0]

    def __getstate__(self):
        return {**super().__getstate__(), "_compiled": {}}


def load(path, threads: int = 1, static: bool = False) -> OpenVinoModel:
    require()
    return OpenVinoModel(path, threads, static)
