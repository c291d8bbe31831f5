"""technique=quant's schema, torch-free: `RULES` and `check` are the one place its rules live. The
job runs them before torch loads (stage.py), the callback on its own arguments (callback.py)."""

from compressor import rules
from compressor.errors import ConfigError

MODES = ("dynamic", "static", "qat", "fp16", "bf16")
BACKENDS = ("torch", "onnxruntime", "openvino")
APIS = ("fx", "pt2e")  # static/QAT int8 on backend=torch: torch.ao FX (deprecated) or torchao pt2e

RULES = {
    "mode": rules.choice(MODES),
    "backend": rules.choice(BACKENDS),
    "api": rules.choice(APIS),
    "calibration_batches": rules.integer(1),
    "keep_float": rules.strings(),
}

GRAPH_INT8 = (("torch", "static"), ("torch", "qat"))  # (backend, mode) built by an int8 API (fx or pt2e)


def fine_tunes(mode: str) -> bool:
    """Only QAT trains; post-training modes run a zero-epoch fit (calibrate, convert)."""
    return mode == "qat"


def check(values: dict, prefix: str = "technique.") -> None:
    rules.apply(values, RULES, prefix)
    mode, backend = values.get("mode", "static"), values.get("backend", "torch")
    if backend == "onnxruntime" and mode not in ("dynamic", "static"):
        raise ConfigError(f"{prefix}mode={mode!r} with {prefix}backend=onnxruntime: choose dynamic or static")
    if backend == "openvino" and mode != "static":
        raise ConfigError(f"{prefix}mode={mode!r} with {prefix}backend=openvino: choose static (NNCF PTQ)")
    if values.get("api", "fx") != "fx" and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(
            f"{prefix}api={values['api']} with mode={mode} backend={backend}: the int8 API is chosen "
            "for mode=static or qat with backend=torch"
        )
    if values.get("keep_float") and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(
            f"{prefix}keep_float with mode={mode} backend={backend}: layers can be kept float "
            "for mode=static or qat with backend=torch"
        )
