"""technique=prune's settings, torch-free: each key's default, rule and meaning (`Prune`), and the
rules that join keys (`check`). The job checks them before torch loads (stage.py), the callback
checks the arguments it is given against the same class (callback.py: Pruning)."""

from dataclasses import dataclass

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques import shared
from compressor.techniques.prune import importance

METHODS = ("l1_unstructured", "random_unstructured", "channel")
SCOPES = ("global", "layer", "lamp")  # lamp: layer-adaptive magnitude scores (Lee et al. 2021), unstructured L1
SCHEDULES = ("oneshot", "cubic")
COSTS = ("macs", "latency_b1", "latency_b64")  # cost.py: what a budget's per-layer step saves
SEARCHED = ("l1_unstructured", "channel")  # what a budget or a scan varies: random has no ranking


@dataclass
class Prune(shared.FineTune):
    amount: float = s.setting(
        0.5, s.number(ge=0, lt=1), "fraction pruned: of weights (unstructured) or of channels (channel)"
    )
    method: str = s.setting("l1_unstructured", s.choice(METHODS), " | ".join(METHODS))
    scope: str | None = s.setting(
        None,
        (lambda v: v is None or v in SCOPES, f"one of {', '.join(SCOPES)} (or null)"),
        "global (one magnitude ranking) | layer (the same fraction per layer) | lamp (LAMP scores, "
        "unstructured) | null: layer for channel, global otherwise (docs/techniques.md: why)",
    )
    schedule: str = s.setting("oneshot", s.choice(SCHEDULES), "oneshot | cubic (Zhu & Gupta 2017, over the fine-tune)")
    ramp_epochs: int | None = s.setting(
        None, s.integer(0, optional=True), "cubic: epoch at which `amount` is reached (null: the last epoch)"
    )
    amounts: dict | None = s.setting(
        None, s.amounts(), "{layer: amount} instead of `amount` (one shot); a budgeted run saves its own"
    )
    importance: str = s.setting(
        "l1",
        (importance.valid, importance.ALLOWED),
        "channel: l1 (per filter) | group_norm (DepGraph, over coupled layers) | taylor (|w x grad|)",
    )
    steps: int = s.setting(1, s.integer(1), "channel: remove `amount` in this many steps, fine-tuning between them")
    regularize_epochs: int = s.setting(
        0, s.integer(0), "channel: epochs of DepGraph's group-norm sparsity regulariser before the first step"
    )
    reg: float = s.setting(5.0e-4, s.number(ge=0), "its strength")
    cost: str = s.setting(
        "macs",
        s.choice(COSTS),
        "channel under budget.max_drop or `speedup`: what pruning saves, MACs or the latency measured on "
        "torch at batch 1 or 64 (cost.py, target.py)",
    )
    speedup: float | None = s.setting(
        None,
        s.number(gt=1, optional=True),
        "channel: instead of `amount`, the per-layer widths that make the model this many times cheaper by "
        "`cost`, found by NetAdapt's steps on validation images (target.py; null: `amount`)",
    )
    round_to: int | None = s.setting(
        None,
        s.integer(1, optional=True),
        "channel (scope layer, `amounts` or `speedup`): keep each layer's channels a multiple of this, the "
        "nearest to what `amount` gives (a layer this narrow or narrower is left whole); 16 for ExecuTorch "
        "int8, whose XNNPACK convolutions run 16 channels at a time (docs/techniques.md; null: as `amount` gives)",
    )
    include: list = s.setting(["*"], s.strings(), "layer-name globs")
    exclude: list = s.setting([], s.strings(), "layer-name globs left dense")
    epochs: int = shared.epochs(4)
    lr: float = shared.lr(1.0e-3)


def scope_of(method: str, scope: str | None) -> str:
    """null's scope: channels the same fraction per layer (one global L1 ranking compares filter norms
    across layers of different widths and empties some far beyond `amount`; measured in
    experiments/README.md, "The default prune recipe"), weights one global ranking."""
    if scope is not None:
        return scope
    return "layer" if method == "channel" else "global"


def check(values: dict, prefix: str = "technique.") -> None:
    """The rules that join keys, on every key's value (a stage's config over the defaults, or a
    callback's settings). `epochs`, when given, is checked against the channel steps."""
    method, schedule = values["method"], values["schedule"]
    scope = scope_of(method, values["scope"])
    if scope == "lamp" and method != "l1_unstructured":
        raise ConfigError(
            f"{prefix}scope=lamp with {prefix}method={method}: LAMP ranks weights by magnitude; "
            "choose method=l1_unstructured, or scope global or layer"
        )
    if method == "channel" and schedule != "oneshot":
        raise ConfigError(
            f"{prefix}schedule=cubic with {prefix}method=channel: for channels in several steps "
            f"set {prefix}steps; choose schedule=oneshot for channel, or an unstructured method"
        )
    default = Prune()
    structural = {
        key: values[key] != getattr(default, key)
        for key in ("importance", "steps", "regularize_epochs", "cost", "speedup", "round_to")
    }
    for key, used in structural.items():
        if used and method != "channel":
            raise ConfigError(
                f"{prefix}{key} applies to {prefix}method=channel (unstructured methods have {prefix}schedule=cubic)"
            )
    if (
        values.get("round_to") is not None
        and scope == "global"
        and not values["amounts"]
        and values.get("speedup") is None
    ):
        raise ConfigError(
            f"{prefix}round_to with {prefix}scope=global: one ranking across layers sets each layer's count; "
            f"choose scope=layer, or {prefix}amounts or {prefix}speedup"
        )
    if values["amounts"] and values.get("speedup") is not None:
        raise ConfigError(f"{prefix}amounts with {prefix}speedup: the speedup chooses the amounts; give one of them")
    if values["amounts"]:
        if schedule != "oneshot":
            raise ConfigError(
                f"{prefix}amounts with {prefix}schedule=cubic: per-layer amounts are applied in one "
                "shot; choose schedule=oneshot"
            )
        if method == "random_unstructured":
            raise ConfigError(
                f"{prefix}amounts with {prefix}method=random_unstructured: choose l1_unstructured or channel"
            )
    need = values["steps"] + values["regularize_epochs"]
    if method == "channel" and need > 1 and values.get("epochs") is not None and values["epochs"] < need:
        raise ConfigError(
            f"{prefix}steps={values['steps']} after {prefix}regularize_epochs="
            f"{values['regularize_epochs']}: needs {prefix}epochs >= {need} (one epoch per step)"
        )
