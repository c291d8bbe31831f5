"""The rules a value must follow, as (test, what is allowed) pairs, and the one function that
applies a table of them. It imports nothing heavy: every rule runs before torch and Lightning
load. Each rule lives in one table, beside the code it guards (compressor/validate.py for the
job's own keys, each stage's module for its technique keys); a class built outside a job (a
callback in a user's own Trainer) checks its arguments against the same table."""

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from compressor import choices
from compressor.errors import ConfigError


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo=None, hi=None, optional=False):
    text = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
    return (
        lambda v: (optional and v is None) or (_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)),
        text + (" (or null)" if optional else ""),
    )


class Number(tuple):
    """A number rule (test, what is allowed). An integer given for it is the same number as a float:
    `apply` writes it back as a float, so `budget.max_drop=1` and `=1.0` are one job to the index."""


def number(gt=None, ge=None, lt=None, le=None, optional=False):
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]

    def ok(v):
        if optional and v is None:
            return True
        return (
            _num(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
            and (le is None or v <= le)
        )

    return Number((ok, " ".join(["a number", " and ".join(bounds)]).strip() + (" (or null)" if optional else "")))


def boolean():
    return (lambda v: isinstance(v, bool)), "true or false"


def text(optional=False):
    return (lambda v: (optional and v is None) or (isinstance(v, str) and v != "")), "a non-empty string" + (
        " (or null)" if optional else ""
    )


def choice(options):
    options = list(options)
    return (lambda v: v in options), "one of " + ", ".join(map(str, options))


def subset(options):
    options = list(options)
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(x in options for x in v)
    ), "a non-empty list of " + ", ".join(options)


def strings():
    return (lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)), "a list of strings"


def numbers(positive=False):
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(x) and (not positive or x > 0) for x in v),
        "a non-empty list of " + ("positive " if positive else "") + "numbers",
    )


def fractions():
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(a) and 0 < a < 1 for a in v),
        "a non-empty list of amounts in (0, 1)",
    )


def amounts():
    return (
        lambda v: v is None or (isinstance(v, dict) and len(v) > 0 and all(_num(a) and 0 <= a < 1 for a in v.values())),
        "null or a mapping {layer name: amount in [0, 1)}",
    )


_ABSENT, _MISSING = object(), object()


def value(node, key, name=None):
    """The value at a dotted key as plain Python; _ABSENT when there is no such key, _MISSING for `???`.
    `name` is the key's full name for the error an unresolvable interpolation gives."""
    try:
        found = OmegaConf.select(node, key, default=_ABSENT, throw_on_missing=True)
    except MissingMandatoryValue:
        return _MISSING
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{name or key}: {' '.join(str(exc).split())[:300]}") from None
    return OmegaConf.to_container(found, resolve=True) if isinstance(found, (DictConfig, ListConfig)) else found


def apply(node, rules: dict, prefix: str = "", required=()) -> None:
    """Raise one ConfigError line for the first key of `node` (a config or a plain dict) that
    breaks its rule; keys absent from `node` pass unless `required`."""
    node = node if isinstance(node, DictConfig) else OmegaConf.create(dict(node))
    for key, (ok, allowed) in rules.items():
        got = value(node, key, f"{prefix}{key}")
        if got is _ABSENT and key not in required:
            continue
        if got is _ABSENT or got is _MISSING:
            raise ConfigError(f"{prefix}{key} is not set: must be {allowed}")
        if not ok(got):
            raise ConfigError(f"{prefix}{key}={got!r}: must be {allowed}")
        if isinstance(rules[key], Number) and _int(got):
            as_float(node, key)


def as_float(node: DictConfig, key: str) -> None:
    """The integer at `key` written back as a float, unless it is an interpolation (its source is checked)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(node, parent_key) if parent_key else node
    if not OmegaConf.is_interpolation(parent, leaf):
        parent[leaf] = float(parent[leaf])


def check_terms(weights: dict, temperature, key: str = "technique.weights") -> None:
    """Distillation: loss terms known, weights non-negative numbers, temperature positive."""
    unknown = set(weights) - set(choices.LOSS_TERMS)
    if unknown:
        raise ConfigError(f"{key} has unknown terms {sorted(unknown)}; choose from {', '.join(choices.LOSS_TERMS)}")
    if not weights:
        raise ConfigError(f"{key} is empty; give at least one of " + ", ".join(choices.LOSS_TERMS))
    bad = {k: v for k, v in weights.items() if not (_num(v) and v >= 0)}
    if bad:
        raise ConfigError(f"{key} has weights {bad}: each must be a number >= 0")
    if not (_num(temperature) and temperature > 0):
        raise ConfigError(f"{key.rsplit('.', 1)[0]}.temperature={temperature!r}: must be a number > 0")
