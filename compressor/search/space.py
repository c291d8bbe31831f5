"""search=default's schema and candidate space, torch-free (checked before torch loads).

A point of the space is (student, prune, precision): distil into a student or not, prune channels
or weights by an amount or not, and leave fp32, int8, fp16 or 4-bit shared weights. `overrides`
turns a point into the Hydra overrides of one pipeline job: kd -> prune -> quant or cluster, the
one order in which each stage's input is what it expects (a pruned float model is quantized; an
int8 model is not pruned)."""

from pathlib import Path

from compressor import rules, runtimes
from compressor.errors import ConfigError

OBJECTIVES = ("latency_b1", "latency_b64", "size")
PRECISIONS = ("fp32", "int8", "fp16", "cluster")
FINE_TUNED = ("kd", "prune", "cluster")  # the stages whose epochs a first rung shortens

# a dimension may be empty (search.channel=[] tries no channel pruning), unlike budget.grid
AMOUNTS = (
    lambda v: isinstance(v, (list, tuple)) and all(rules._num(a) and 0 < a < 1 for a in v),
    "a list of amounts in (0, 1)",
)
EPOCHS = (
    lambda v: (
        isinstance(v, dict) and all(k in FINE_TUNED and (n is None or rules._int(n) and n >= 1) for k, n in v.items())
    ),
    f"a mapping of stage ({', '.join(FINE_TUNED)}) to epochs >= 1 or null (the stage's own), e.g. {{kd: 12}}",
)
RULES = {
    "objective": rules.choice(OBJECTIVES),
    "runtime": (
        lambda v: isinstance(v, str) and bool(v),
        f"any, torch, a runtime ({', '.join(runtimes.names())}) or a runtime module of your own",
    ),
    "max_trials": rules.integer(1),
    "time_budget_min": rules.number(gt=0, optional=True),
    "parallel": rules.integer(1),
    "rung_fraction": rules.number(gt=0, le=1),
    "full_epochs": EPOCHS,
    "promote": rules.integer(1),
    "skip_outclassed": rules.boolean(),
    "margin": rules.number(ge=0),
    "students": rules.strings(),
    "channel": AMOUNTS,
    "unstructured": AMOUNTS,
    "precisions": rules.subset(PRECISIONS),
}


def check(cfg) -> None:
    """The search's keys; it needs the accuracy you can afford."""
    rules.apply(cfg.search, RULES, "search.")
    if cfg.search.runtime not in ("any", "torch"):
        try:
            runtimes.get(cfg.search.runtime)
        except ConfigError as exc:
            raise ConfigError(f"search.runtime={cfg.search.runtime!r}: {exc}") from None
    if cfg.budget.max_drop is None:
        raise ConfigError(
            "search=default needs budget.max_drop: the validation-accuracy points you can afford, "
            "e.g. budget.max_drop=1"
        )


def students(search, model: str, conf: Path) -> list[str]:
    """The model configs a point may distil into: `auto` is student_of_<model> where conf/model has one."""
    out = []
    for name in search.students:
        if name == "auto":
            name = f"student_of_{model}"
            if not (conf / "model" / f"{name}.yaml").is_file():
                continue
        if not (conf / "model" / f"{name}.yaml").is_file():
            raise ConfigError(f"search.students names {name!r}: no conf/model/{name}.yaml")
        out.append(name)
    return out


def precisions(search) -> list[str]:
    """The number formats sampled. A latency objective leaves out 4-bit sharing (cluster): its shared
    values are float weights in every exported file, run by the same float kernels as the point
    without it, in files no smaller, at lower accuracy, so it cannot win on latency, and its
    fine-tune is a first rung's dearest trial (docs/search.md gives the measurements)."""
    if search.objective == "size":
        return list(search.precisions)
    return [p for p in search.precisions if p != "cluster"] or ["fp32"]


def dimensions(search, model: str, conf: Path) -> dict:
    """Each dimension's choices as strings (what Optuna's categorical distribution takes)."""
    prune = ["none", *(f"channel {a:g}" for a in search.channel), *(f"unstructured {a:g}" for a in search.unstructured)]
    return {"student": ["none", *students(search, model, conf)], "prune": prune, "precision": precisions(search)}


def stages(point: dict) -> list[str]:
    out = [] if point["student"] == "none" else ["kd"]
    out += [] if point["prune"] == "none" else ["prune"]
    out += {"int8": ["quant"], "fp16": ["quant"], "cluster": ["cluster"]}.get(point["precision"], [])
    return out


def label(point: dict) -> str:
    parts = [] if point["student"] == "none" else [f"kd into {point['student']}"]
    parts += [] if point["prune"] == "none" else [f"prune {point['prune']}"]
    parts += [] if point["precision"] == "fp32" else [point["precision"]]
    return " + ".join(parts) or "baseline"


def full_epochs(search, conf: Path) -> dict:
    """Each fine-tuning stage's full recipe (a promoted trial's): search.full_epochs, else the stage's
    own epochs (conf/technique/<kind>.yaml)."""
    from omegaconf import OmegaConf

    return {
        kind: int(search.full_epochs.get(kind) or OmegaConf.load(conf / "technique" / f"{kind}.yaml").epochs)
        for kind in FINE_TUNED
    }


def rung_epochs(search, full: dict) -> dict:
    """A first-rung trial's epochs: search.rung_fraction of each stage's full epochs, at least 1."""
    return {kind: max(1, round(search.rung_fraction * n)) for kind, n in full.items()}


def export(runtime: str) -> list[str]:
    """The export overrides that write the files of `runtime` (any: every built-in runtime's)."""
    if runtime == "any":
        return ["export=all"]
    if runtime == "torch":
        return ["export=none"]
    key = runtimes.keys().get(runtime)
    return ["export=none", f"export.{key}=true" if key else f"export.runtimes=[{runtime}]"]


def overrides(point: dict, model: str, runtime: str, epochs: dict, full: dict | None = None) -> list[str]:
    """One job's overrides; `epochs` gives each fine-tuning stage's epochs (short ones: a first rung),
    `full` the epochs its learning-rate schedule spans: a first rung stops early on the full schedule,
    so its promotion continues the same fit (compressor/prefixes.py)."""
    order = stages(point)
    out = [*export(runtime), "export.test=false", f"teacher={model}"]  # test: the frontier's files only
    if not order:
        return [*out, "technique=baseline", f"model={model}"]
    out += [
        "technique=pipeline",
        f"technique.order=[{','.join(order)}]",
        f"model={point['student'] if 'kd' in order else model}",
    ]
    if "prune" in order:
        method, amount = point["prune"].split()
        out += [
            f"technique.prune.method={'channel' if method == 'channel' else 'l1_unstructured'}",
            f"technique.prune.amount={amount}",
        ]
    if "quant" in order:
        out += [f"technique.quant.mode={'static' if point['precision'] == 'int8' else 'fp16'}"]
    for kind in FINE_TUNED:
        if kind in order:
            out.append(f"technique.{kind}.epochs={epochs[kind]}")
            out += [f"technique.{kind}.schedule_epochs={full[kind]}"] if full else []
    return out


def fine_tunes(point: dict) -> bool:
    return any(k in stages(point) for k in FINE_TUNED)
