"""search=default's schema and candidate space, torch-free (checked before torch loads).

The space is made of the techniques `search.techniques` names, in the order a trial's pipeline runs
them (by default distillation, pruning, then quantization or weight sharing: the one order in which
each stage's input is what it expects). Each technique's stage class declares its own axis
(`dimension`, compressor/techniques/base.py): its values, the settings a value becomes, which epochs
a first rung shortens; this module names none of them. A point maps each axis to a value (by
default three: the student, the pruning, the number format); `overrides` turns it into the Hydra
overrides of one job."""

from functools import lru_cache
from pathlib import Path

from compressor import runtimes, settings
from compressor.errors import ConfigError

OBJECTIVES = ("latency_b1", "latency_b64", "size")

# a dimension may be empty (search.channel=[] tries no channel pruning), unlike budget.grid
AMOUNTS = (
    lambda v: isinstance(v, (list, tuple)) and all(settings._num(a) and 0 < a < 1 for a in v),
    "a list of amounts in (0, 1)",
)
EPOCHS = (
    lambda v: isinstance(v, dict) and all(n is None or settings._int(n) and n >= 1 for n in v.values()),
    "a mapping of a fine-tuning stage's name to epochs >= 1 or null (the stage's own)",
)
RULES = {
    "objective": settings.choice(OBJECTIVES),
    "runtime": (
        lambda v: isinstance(v, str) and bool(v),
        f"any, torch, a runtime ({', '.join(runtimes.names())}) or a runtime module of your own",
    ),
    "max_trials": settings.integer(1),
    "time_budget_min": settings.number(gt=0, optional=True),
    "parallel": settings.integer(1),
    "rung_fraction": settings.number(gt=0, le=1),
    "full_epochs": EPOCHS,
    "promote": settings.integer(1),
    "skip_outclassed": settings.boolean(),
    "margin": settings.number(ge=0),
    "students": settings.strings(),
    "channel": AMOUNTS,
    "unstructured": AMOUNTS,
    "precisions": settings.strings(),
    "techniques": settings.strings(),
}


def check(cfg) -> None:
    """The search's keys; it needs the accuracy you can afford."""
    settings.apply(cfg.search, RULES, "search.")
    if cfg.search.runtime not in ("any", "torch"):
        try:
            runtimes.get(cfg.search.runtime)
        except ConfigError as exc:
            raise ConfigError(f"search.runtime={cfg.search.runtime!r}: {exc}") from None
    search = cfg.search
    shortened = [kind for kind, d in kinds(search) if d.shortened]
    unknown = sorted(set(search.full_epochs) - set(shortened))
    if unknown:
        raise ConfigError(f"search.full_epochs names {unknown}: only stages a search fine-tunes: {shortened}")
    precision = {v for _, d in kinds(search) if d.axis == "precision" for v in (d.none, *d.choices)}
    if precision and not set(search.precisions) <= precision:
        raise ConfigError(f"search.precisions={list(search.precisions)}: each must be one of {sorted(precision)}")
    if cfg.budget.max_drop is None:
        raise ConfigError(
            "search=default needs budget.max_drop: the validation-accuracy points you can afford, "
            "e.g. budget.max_drop=1"
        )


@lru_cache(maxsize=8)
def searched(techniques: tuple) -> tuple:
    """(kind, dimension) of each technique the space is made of, in pipeline order: each named by its
    conf/technique/<name>.yaml, whose stage class declares its `dimension` (compressor/techniques/base.py)."""
    from compressor.techniques import configured

    out = []
    for name in techniques:
        kind, cls = configured.stage(name, "search.techniques ")
        if cls.dimension is None:
            raise ConfigError(f"search.techniques names {name!r}: its stage class declares no search dimension")
        out.append((kind, cls.dimension))
    return tuple(out)


def kinds(search) -> tuple:
    return searched(tuple(search.techniques))


def dimensions(search, model: str, conf: Path) -> dict:
    """Each axis's choices as strings (what Optuna's categorical distribution takes): the value that
    leaves its stages out first (where kept), then each stage's own values, in pipeline order."""
    dims: dict = {}
    for _, d in kinds(search):
        axis = dims.setdefault(d.axis, [d.none] if d.keeps_none(search) else [])
        axis += [v for v in d.values(search, model, conf) if v not in axis]
    return {name: values or [nothing(search)[name]] for name, values in dims.items()}


def stages(point: dict, search) -> list[tuple[str, object, str]]:
    """(kind, dimension, value) of each stage a point runs, in pipeline order."""
    return [(kind, d, point[d.axis]) for kind, d in kinds(search) if d.owns(point[d.axis])]


def label(point: dict, search) -> str:
    return " + ".join(d.label(value) for _, d, value in stages(point, search)) or "baseline"


def fine_tunes(point: dict, search) -> bool:
    return any(d.shortened for _, d, _ in stages(point, search))


def fit_of(point: dict, search) -> tuple:
    """The stages a point fine-tunes, with their values: points that differ only after them (int8 or
    fp32 of one pruned student) share one fit (compressor/prefixes.py), so one full recipe."""
    return tuple((kind, value) for kind, d, value in stages(point, search) if d.shortened)


def full_epochs(search, conf: Path) -> dict:
    """Each fine-tuning stage's full recipe (a promoted trial's): search.full_epochs, else the stage's
    own epochs (conf/technique/<kind>.yaml)."""
    from omegaconf import OmegaConf

    return {
        kind: int(search.full_epochs.get(kind) or OmegaConf.load(conf / "technique" / f"{kind}.yaml").epochs)
        for kind, d in kinds(search)
        if d.shortened
    }


def rung_epochs(search, full: dict) -> dict:
    """A first-rung trial's epochs: search.rung_fraction of each stage's full epochs, at least 1."""
    return {kind: max(1, round(search.rung_fraction * n)) for kind, n in full.items()}


def nothing(search) -> dict:
    """The point that runs no stage: every axis at its `none` (the baseline)."""
    out: dict = {}
    for _, d in kinds(search):
        out.setdefault(d.axis, d.none)
    return out


def anchors(dims: dict, search) -> list[dict]:
    """Each value of a stage that is tried alone first (its dimension's `anchor`: each lower precision
    of the model as it is, the cheapest files, which NSGA-II's random first generation can miss: 6
    trials, converged SimpleCNN, seed 1, had no int8 point and shipped a float file)."""
    return [
        {**nothing(search), d.axis: v}
        for _, d in kinds(search)
        if d.anchor
        for v in dims[d.axis]
        if v != d.none and d.owns(v)
    ]


def export(runtime: str) -> list[str]:
    """The export overrides that write the files of `runtime` (any: every built-in runtime's)."""
    if runtime == "any":
        return ["export=all"]
    if runtime == "torch":
        return ["export=none"]
    key = runtimes.keys().get(runtime)
    return ["export=none", f"export.{key}=true" if key else f"export.runtimes=[{runtime}]"]


def overrides(point: dict, search, model: str, runtime: str, epochs: dict, full: dict | None = None) -> list[str]:
    """One job's overrides; `epochs` gives each fine-tuning stage's epochs (short ones: a first rung),
    `full` the epochs its learning-rate schedule spans: a first rung stops early on the full schedule,
    so its promotion continues the same fit (compressor/prefixes.py)."""
    order = stages(point, search)
    out = [*export(runtime), "export.test=false", f"teacher={model}"]  # test: the frontier's files only
    if not order:
        return [*out, "technique=baseline", f"model={model}"]
    starts = next((d.model(v, model) for _, d, v in order if d.model is not None), model)
    out += ["technique=pipeline", f"technique.order=[{','.join(kind for kind, _, _ in order)}]", f"model={starts}"]
    for kind, d, value in order:
        out += [f"technique.{kind}.{k}={v}" for k, v in (d.settings(value) if d.settings else {}).items()]
        if d.shortened:
            out.append(f"technique.{kind}.epochs={epochs[kind]}")
            out += [f"technique.{kind}.schedule_epochs={full[kind]}"] if full else []
    return out
