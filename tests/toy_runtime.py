"""A runtime of a user's own, written outside the package as one module (docs/techniques.md, "a
runtime of your own"): ONNX Runtime under other file names, its int8 by onnxruntime's dynamic
quantization. Named by its module path: export.runtimes=[tests.toy_runtime],
search.runtime=tests.toy_runtime, predict --runtime tests.toy_runtime."""

from pathlib import Path

from compressor.runtimes.onnx import OnnxModel

FILES = {"fp32": "model.toy", "int8": "model.int8.toy"}
STATIC = False
MODES = ()  # not a quant backend
WITHIN = None
EXPORTED: list[str] = []  # what this process exported, for the test to see


def require() -> None:
    pass


def version() -> str:
    return "toy 1"


def export(model, example, path) -> Path:
    from compressor.runtimes import onnx  # a user's runtime may build on a built-in's functions

    onnx.export(model, example, path)
    EXPORTED.append(Path(path).name)
    return Path(path)


def int8(model, example, calibration, fp32, path, mode="static", within=None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
    EXPORTED.append(Path(path).name)
    return Path(path)


class ToyModel(OnnxModel):
    """An ONNX Runtime session; its class is this module's, so its runtime is tests.toy_runtime."""


def load(path, threads: int = 1, static: bool = False) -> ToyModel:
    return ToyModel(path, threads)
