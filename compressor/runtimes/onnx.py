"""ONNX Runtime: ONNX export (torch.onnx, dynamo exporter), its own int8 (onnxruntime.quantization,
static QDQ or dynamic) and sessions. A runtime module (compressor/runtimes/base.py)."""

import os
from pathlib import Path

from compressor.runtimes.base import RuntimeModel, installed

FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
STATIC = False
MODES = ("dynamic", "static")
WITHIN = None


def require() -> None:
    pass  # a core dependency


def version() -> str:
    return installed("onnxruntime")


def export(model, example, path) -> Path:
    """Export with a dynamic batch axis; weights inside the file so its size is the model's size."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model.cpu().eval(),
        (example[:1].cpu(),),
        dynamo=True,
        verbose=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        external_data=False,
    )
    program.save(str(tmp), external_data=False)
    os.replace(tmp, path)
    return path


def int8(model, example, calibration, fp32, path, mode: str = "static", within=None) -> Path:
    """onnxruntime.quantization of the fp32 file: static (QDQ, per-channel weights, calibrated on
    `calibration`, a list of input batches) or dynamic. The graph is pre-processed (shape inference,
    fusion) first."""
    import numpy as np
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(fp32), Path(path)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre))
    try:
        if mode == "static":
            quantize_static(
                str(pre),
                str(dst),
                _Reader([b.numpy().astype(np.float32) for b in calibration]),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    return dst


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of input arrays, read once."""

    def __init__(self, batches):
        self.batches = iter([{"input": b} for b in batches])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # onnxruntime may call it; the reader is used once
        pass


class OnnxModel(RuntimeModel):
    """An onnxruntime session."""

    def open(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def run(self, x):
        return self.session().run(None, {"input": x})[0]


def load(path, threads: int = 1, static: bool = False) -> OnnxModel:
    return OnnxModel(path, threads)
