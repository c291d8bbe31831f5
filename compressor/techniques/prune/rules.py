"""technique=prune's schema, torch-free: `RULES` and `check` are the one place its rules live. The
job runs them before torch loads (compressor.stages.prune.Prune.validate), and the callback runs
the same `check` on its own arguments when a user builds it by hand (compressor.callbacks.Pruning).
A module of its own, below both: the stage reaches the budget's search, which builds callbacks."""
from compressor import choices, rules
from compressor.errors import ConfigError

RULES = {"amount": rules.number(ge=0, lt=1), "method": rules.choice(choices.PRUNE_METHODS),
         "scope": rules.choice(choices.PRUNE_SCOPES), "schedule": rules.choice(choices.PRUNE_SCHEDULES),
         "ramp_epochs": rules.integer(0, optional=True), "include": rules.strings(), "exclude": rules.strings(),
         "amounts": rules.amounts(), "importance": rules.choice(choices.PRUNE_IMPORTANCES), "steps": rules.integer(1),
         "regularize_epochs": rules.integer(0), "reg": rules.number(ge=0), "taylor_batches": rules.integer(1)}


def check(values: dict, prefix: str = "technique.") -> None:
    """Each key's rule, then the rules that join keys; `values` holds what is set (a stage config
    or a callback's arguments). `epochs` is checked against the channel steps when given."""
    rules.apply(values, RULES, prefix)
    method, scope = values.get("method", "l1_unstructured"), values.get("scope", "global")
    if scope == "lamp" and method != "l1_unstructured":
        raise ConfigError(f"{prefix}scope=lamp with {prefix}method={method}: LAMP ranks weights by magnitude; "
                          "choose method=l1_unstructured, or scope global or layer")
    if method == "channel" and values.get("schedule", "oneshot") != "oneshot":
        raise ConfigError(f"{prefix}schedule=cubic with {prefix}method=channel: for channels in several steps "
                          f"set {prefix}steps; choose schedule=oneshot for channel, or an unstructured method")
    structural = {"importance": values.get("importance", "l1") != "l1", "steps": values.get("steps", 1) > 1,
                  "regularize_epochs": values.get("regularize_epochs", 0) > 0}
    for key, used in structural.items():
        if used and method != "channel":
            raise ConfigError(f"{prefix}{key} applies to {prefix}method=channel (unstructured methods have "
                              f"{prefix}schedule=cubic)")
    if values.get("amounts"):
        if values.get("schedule", "oneshot") != "oneshot":
            raise ConfigError(f"{prefix}amounts with {prefix}schedule=cubic: per-layer amounts are applied in one "
                              "shot; choose schedule=oneshot")
        if method == "random_unstructured":
            raise ConfigError(f"{prefix}amounts with {prefix}method=random_unstructured: choose l1_unstructured "
                              "or channel")
    need = values.get("steps", 1) + values.get("regularize_epochs", 0)
    if method == "channel" and need > 1 and values.get("epochs") is not None and values["epochs"] < need:
        raise ConfigError(f"{prefix}steps={values.get('steps', 1)} after {prefix}regularize_epochs="
                          f"{values.get('regularize_epochs', 0)}: needs {prefix}epochs >= {need} (one epoch per step)")
