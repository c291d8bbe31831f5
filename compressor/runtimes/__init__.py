"""Where a model runs besides PyTorch. Each runtime is one module here, and nothing outside this
package names one: deploy.py exports, checks and times every file of every runtime a run's `export`
switches on; predict, the quant stage's backends, the search and the latency table ask this registry.

A runtime's name (in results.json, `search.runtime`, `technique.backend`, `predict --runtime`) is
its key in BUILT_IN, or for one of your own its module path. A runtime module declares
(compressor/runtimes/base.py states the contract):
    FILES    {"fp32": file name, "int8": file name} in the run folder
    STATIC   whether it also compiles a file for a fixed input shape ("<precision> static" candidates)
    MODES    the quant stage's modes it runs as `technique.backend` (() where it is not a backend)
    WITHIN   how its int8 meets an accuracy budget by itself (OpenVINO: NNCF's accuracy control), or None
    require()                                  its packages, or one line naming the pip extra
    export(model, example, path)               the float torch model to its fp32 file
    int8(model, example, calibration, fp32, path, mode, within)   its own int8 of that model
    load(path, threads=1, static=False)        a base.RuntimeModel: float tensor in, logits out
    version()                                  part of each latency table entry's key

A runtime of your own is a module anywhere on the path, named where a built-in's name goes
(`export.runtimes=[my_pkg.my_runtime]`, `search.runtime=my_pkg.my_runtime`, `predict --runtime
my_pkg.my_runtime`); docs/techniques.md, "a runtime of your own"."""

import importlib
from types import ModuleType

from compressor.errors import ConfigError

# name -> (module, its switch in conf/export: export.<key>: true writes its files), the built-ins,
# imported only when used (nothing registers itself on import; validation reads the keys before torch)
BUILT_IN = {
    "onnxruntime": ("compressor.runtimes.onnx", "onnx"),
    "openvino": ("compressor.runtimes.openvino", "openvino"),
    "executorch": ("compressor.runtimes.executorch", "executorch"),
}
# built-ins added after jobs were first keyed: their export switch, off, stays out of every key
# (compressor/baseline.py), so the jobs keyed before them are still found
LATER = ("executorch",)
# what the runtimes log or warn that a user cannot act on (compressor/console.py silences it): the ONNX
# exporter's graph passes, ONNX Runtime's shape inference, NNCF's statistics steps
LOGGERS = ("onnxruntime", "nncf", "onnx_ir", "onnxscript", "torch.onnx")
WARNINGS = ((r"`torch\.jit\.trace(_method)?` is deprecated", "openvino.convert_model traces with TorchScript itself"),)
REQUIRED = ("FILES", "STATIC", "MODES", "WITHIN", "require", "export", "int8", "load", "version")


def names() -> tuple[str, ...]:
    return tuple(BUILT_IN)


def keys() -> dict[str, str]:
    """runtime name -> its export.<key>, for the built-ins (read without importing any runtime)."""
    return {name: key for name, (_, key) in BUILT_IN.items()}


def by_key(key: str) -> str:
    """The built-in runtime whose export switch is `key`."""
    return next(name for name, k in keys().items() if k == key)


def get(name: str) -> ModuleType:
    """The runtime `name`: a built-in's name or a module path of your own."""
    path = BUILT_IN[name][0] if name in BUILT_IN else name
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        if name in BUILT_IN:  # the built-ins import their packages only when used: this is a bug
            raise
        what = "no such module" if exc.name and (path == exc.name or path.startswith(f"{exc.name}.")) else str(exc)
        raise ConfigError(
            f"runtime {name!r}: {what}; use one of {', '.join(BUILT_IN)} or a module path of your own"
        ) from None
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        raise ConfigError(
            f"runtime {name!r} ({path}) does not declare {', '.join(missing)} (compressor/runtimes/base.py)"
        )
    return module


def selected(export) -> list[str]:
    """The runtimes a run's `export` node switches on: built-ins by their key, then export.runtimes."""
    on = [name for name, key in keys().items() if export.get(key)]
    return on + [r for r in (export.get("runtimes") or []) if r not in on]


def of(model) -> str:
    """The runtime a loaded model runs on: `torch` for a torch module, else its runtime's name (the
    module that defines its class)."""
    from compressor.runtimes.base import RuntimeModel

    if not isinstance(model, RuntimeModel):
        return "torch"
    module = type(model).__module__
    return next((name for name, (path, _) in BUILT_IN.items() if path == module), module)
