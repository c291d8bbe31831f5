"""technique=prune's schema, torch-free: `RULES` and `check` are the one place its rules live. The
job runs them before torch loads (stage.py: Prune.validate), and the callback runs the same
`check` on its own arguments when a user builds it by hand (callback.py: Pruning)."""

from compressor import rules
from compressor.errors import ConfigError
from compressor.techniques.prune import importance

METHODS = ("l1_unstructured", "random_unstructured", "channel")
SCOPES = ("global", "layer", "lamp")  # lamp: layer-adaptive magnitude scores (Lee et al. 2021), unstructured L1
SCHEDULES = ("oneshot", "cubic")
SEARCHED = ("l1_unstructured", "channel")  # what a budget or a scan varies: random has no ranking

RULES = {
    "amount": rules.number(ge=0, lt=1),
    "method": rules.choice(METHODS),
    "scope": rules.choice(SCOPES),
    "schedule": rules.choice(SCHEDULES),
    "ramp_epochs": rules.integer(0, optional=True),
    "include": rules.strings(),
    "exclude": rules.strings(),
    "amounts": rules.amounts(),
    "importance": (importance.valid, importance.ALLOWED),  # channel pruning's criteria: importance.py
    "steps": rules.integer(1),
    "regularize_epochs": rules.integer(0),
    "reg": rules.number(ge=0),
    "taylor_batches": rules.integer(1),
}


def check(values: dict, prefix: str = "technique.") -> None:
    """Each key's rule, then the rules that join keys; `values` holds what is set (a stage config
    or a callback's arguments). `epochs` is checked against the channel steps when given."""
    rules.apply(values, RULES, prefix)
    method, scope = values.get("method", "l1_unstructured"), values.get("scope", "global")
    if scope == "lamp" and method != "l1_unstructured":
        raise ConfigError(
            f"{prefix}scope=lamp with {prefix}method={method}: LAMP ranks weights by magnitude; "
            "choose method=l1_unstructured, or scope global or layer"
        )
    if method == "channel" and values.get("schedule", "oneshot") != "oneshot":
        raise ConfigError(
            f"{prefix}schedule=cubic with {prefix}method=channel: for channels in several steps "
            f"set {prefix}steps; choose schedule=oneshot for channel, or an unstructured method"
        )
    structural = {
        "importance": values.get("importance", "l1") != "l1",
        "steps": values.get("steps", 1) > 1,
        "regularize_epochs": values.get("regularize_epochs", 0) > 0,
    }
    for key, used in structural.items():
        if used and method != "channel":
            raise ConfigError(
                f"{prefix}{key} applies to {prefix}method=channel (unstructured methods have {prefix}schedule=cubic)"
            )
    if values.get("amounts"):
        if values.get("schedule", "oneshot") != "oneshot":
            raise ConfigError(
                f"{prefix}amounts with {prefix}schedule=cubic: per-layer amounts are applied in one "
                "shot; choose schedule=oneshot"
            )
        if method == "random_unstructured":
            raise ConfigError(
                f"{prefix}amounts with {prefix}method=random_unstructured: choose l1_unstructured or channel"
            )
    need = values.get("steps", 1) + values.get("regularize_epochs", 0)
    if method == "channel" and need > 1 and values.get("epochs") is not None and values["epochs"] < need:
        raise ConfigError(
            f"{prefix}steps={values.get('steps', 1)} after {prefix}regularize_epochs="
            f"{values.get('regularize_epochs', 0)}: needs {prefix}epochs >= {need} (one epoch per step)"
        )
