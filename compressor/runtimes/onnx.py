"""ONNX export (torch.onnx, dynamo exporter), ONNX Runtime int8 quantization and sessions.
What a run exports, and how each file is checked and timed: compressor.runtimes."""

import logging
import os
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def to_onnx(model: torch.nn.Module, example: torch.Tensor, path) -> Path:
    """Export with a dynamic batch axis; weights inside the file so its size is the model's size."""
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


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, batches):
        self.batches = iter([{"input": b.numpy().astype(np.float32)} for b in batches])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # onnxruntime may call it; the reader is used once
        pass


def quantize_onnx(src, dst, mode: str, calibration=None) -> Path:
    """int8 with onnxruntime.quantization: static (QDQ, per-channel weights, calibration reader)
    or dynamic. The graph is pre-processed (shape inference, fusion) first."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre))
    try:
        if mode == "static":
            quantize_static(
                str(pre),
                str(dst),
                _Reader(calibration),
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


class RuntimeModel:
    """A deployed file that behaves like a model: float tensor in, logits tensor out. The runtime's
    session opens on first use (`open`), with `threads` intra-op threads; it is not pickled."""

    def __init__(self, path, threads: int = 1):
        self.path = Path(path)
        self.threads = threads
        self._session = None

    def session(self):
        if self._session is None:
            self._session = self.open()
        return self._session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.run(x.detach().cpu().numpy().astype(np.float32))))

    def eval(self):
        return self

    def __getstate__(self):
        return {"path": self.path, "threads": self.threads, "_session": None}


class OnnxModel(RuntimeModel):
    """An onnxruntime session."""

    def open(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray):
        return self.session().run(None, {"input": x})[0]
