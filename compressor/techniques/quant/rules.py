"""technique=quant's schema, torch-free: `RULES` and `check` are the one place its rules live. The
job runs them before torch loads (stage.py), the callback on its own arguments (callback.py)."""

from compressor import rules, runtimes
from compressor.errors import ConfigError

MODES = ("dynamic", "static", "qat", "fp16", "bf16")
APIS = ("fx", "pt2e")  # static/QAT int8 on backend=torch: torch.ao FX (deprecated) or torchao pt2e

RULES = {
    "mode": rules.choice(MODES),
    "backend": (
        lambda v: isinstance(v, str) and bool(v),
        f"torch, a runtime ({', '.join(runtimes.names())}) or a runtime module of your own",
    ),
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
    if backend != "torch":
        try:
            allowed = runtimes.get(backend).MODES  # a runtime module imports nothing heavy
        except ConfigError as exc:
            raise ConfigError(f"{prefix}backend={backend!r}: {exc}") from None
        if mode not in allowed:
            raise ConfigError(
                f"{prefix}mode={mode!r} with {prefix}backend={backend}: choose "
                + (" or ".join(allowed) if allowed else f"another backend ({backend} quantizes nothing itself)")
            )
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
