"""technique=quant's settings, torch-free: each key's default, rule and meaning (`Quant`), and the
rules that join keys (`check`). The job checks them before torch loads (stage.py), the callback
checks the arguments it is given against the same class (callback.py: Quantization)."""

from dataclasses import dataclass

from compressor import runtimes
from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques import shared

MODES = ("dynamic", "static", "qat", "fp16", "bf16")
APIS = ("fx", "pt2e")  # static/QAT int8 on backend=torch: torch.ao FX (deprecated) or torchao pt2e


@dataclass
class Quant(shared.FineTune):
    mode: str = s.setting("static", s.choice(MODES), "dynamic | static | qat | fp16 | bf16")
    backend: str = s.setting(
        "torch",
        (
            lambda v: isinstance(v, str) and bool(v),
            f"torch, a runtime ({', '.join(runtimes.names())}) or a runtime module of your own",
        ),
        "torch, or a runtime that quantizes (" + ", ".join(runtimes.names()) + "; each with its own modes)",
    )
    api: str = s.setting(
        "fx",
        s.choice(APIS),
        "static/qat on torch: fx (torch.ao FX, deprecated) | pt2e (torchao: torch.export, x86 inductor quantizer)",
    )
    calibration_batches: int = s.setting(32, s.integer(1), "training batches seen by the static-int8 observers")
    keep_float: list = s.setting(
        [], s.strings(), "Conv2d/Linear layers left float (static/qat, torch); a budgeted run chooses its own"
    )


GRAPH_INT8 = (("torch", "static"), ("torch", "qat"))  # (backend, mode) built by an int8 API (fx or pt2e)


def fine_tunes(mode: str) -> bool:
    """Only QAT trains; post-training modes run a zero-epoch fit (calibrate, convert)."""
    return mode == "qat"


def check(values: dict, prefix: str = "technique.") -> None:
    """The rules that join keys, on every key's value (a stage's config over the defaults, or a
    callback's settings)."""
    mode, backend = values["mode"], values["backend"]
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
    if values["api"] != Quant.api and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(
            f"{prefix}api={values['api']} with mode={mode} backend={backend}: the int8 API is chosen "
            "for mode=static or qat with backend=torch"
        )
    if values["keep_float"] and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(
            f"{prefix}keep_float with mode={mode} backend={backend}: layers can be kept float "
            "for mode=static or qat with backend=torch"
        )
