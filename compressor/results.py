"""results.json: its schema, and the one reader and writer of it. The job writes one per run; the
report and the bench read them through `read`/`problem`, so a key renamed here is renamed for all.

A run's own metrics sit at the top level, its reference model's (the baseline, or for
distillation the teacher) under `baseline`; every metric is `stage/metric`."""

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, TypedDict

log = logging.getLogger("compressor")

# what every results.json holds at the top and under `baseline`: a report row needs them
METRICS = ("test/acc", "compress/size_mb", "latency/b1_ms", "latency/b64_ms")

Measured = TypedDict(
    "Measured",
    {
        "test/acc": float,
        "val/acc": float,
        "compress/size_mb": float,
        "compress/params": int,
        "compress/nonzero_params": int,
        "compress/sparsity": float,
        "compress/macs": int,
        "latency/b1_ms": float,
        "latency/b64_ms": float,
    },
    total=False,
)


class Run(TypedDict, total=False):
    technique: str  # the technique config's name (conf/technique/<name>.yaml, or a user's own)
    label: str  # what tells this run apart in a report row (each stage's label, joined)
    dataset: str
    model: str
    teacher: str | None  # distillation only
    seed: int
    config_hash: str  # the job's identity (config + data): a rerun with the same skips
    run_dir: str
    images: dict  # {train, val, test}: how many images each split holds
    at_chance: bool  # test accuracy no better than guessing: flagged, never a result
    reused_from: str  # set when the job was skipped and its earlier results copied


class Results(Measured, total=False):
    run: Run
    baseline: dict  # Measured + model, cache_entry, trained_now, at_chance
    stages: list[dict]  # per stage: {"stage": kind, epochs, val/acc_per_epoch, ... its summary}
    budget: dict  # with budget.max_drop: max_drop, val/drop, test/drop, held/val, held/test
    # + each stage's own block (Stage.report: e.g. distillation's teacher accuracy and agreement)
    export: dict  # runtime -> precision -> {path, size_mb, test/acc (val/acc under export.test=false),
    #   agreement, agreement_on, latency ...}
    deploy: dict  # candidates, and the fastest per batch size


def problem(r: Any) -> str | None:
    """Why a parsed results.json cannot be read as one, or None."""
    if not isinstance(r, dict) or not isinstance(r.get("run"), dict) or not isinstance(r.get("baseline"), dict):
        return "not a compressor results.json (no run and baseline sections)"
    for where, block in (("", r), ("baseline.", r["baseline"])):
        bad = [k for k in METRICS if isinstance(block.get(k), bool) or not isinstance(block.get(k), (int, float))]
        if bad:
            return f"{where}{bad[0]} is missing or not a number"
    if not all(isinstance(r["run"].get(k), str) for k in ("dataset", "model", "technique")):
        return "run.dataset, run.model and run.technique must be strings"
    return None


def read(path: Path) -> Results:
    """A results.json as a dict (JSON only: reading never runs code); ValueError naming the file
    when it is not one."""
    r = json.loads(Path(path).read_text())
    why = problem(r)
    if why:
        raise ValueError(f"{path}: {why}")
    return r


def write(path: Path, data: dict) -> None:
    """Written whole or not at all: a full disk leaves no partial file (nor a .json.tmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # a reused job's run folder may not exist yet
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=float))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


SLOWER = 1.1  # a run timed this many times the baseline's latency (side by side) at both batch sizes is slower


def summary_line(r: Results) -> str:
    """The console line of a finished job; a run slower than its baseline at batch 1 and 64 says so
    (half precision on a CPU without half kernels: 8-15x)."""
    b = r["baseline"]
    ratios = [r[k] / b[k] for k in ("latency/b1_ms", "latency/b64_ms") if r.get(k) and b.get(k)]
    slower = (
        f", SLOWER than the baseline ({min(ratios):.1f}x its latency or more)"
        if len(ratios) == 2 and min(ratios) > SLOWER
        else ""
    )
    return (
        f"{r['run']['technique']:>9} {r['run']['model']} on {r['run']['dataset']}: "
        f"test/acc {r['test/acc']:.4f} (baseline {b['test/acc']:.4f}), "
        f"size {r['compress/size_mb']:.3f} MB (baseline {b['compress/size_mb']:.3f}), "
        f"latency b1 {r['latency/b1_ms']:.3f} ms (baseline {b['latency/b1_ms']:.3f}), "
        f"b64 {r['latency/b64_ms']:.4f} ms/img (baseline {b['latency/b64_ms']:.4f}){slower}"
    )


def at_chance(acc: float | None, n: int, num_classes: int) -> bool:
    """Accuracy no better than guessing: within two binomial standard errors of 1/num_classes."""
    if acc is None or n <= 0:
        return False
    p = 1 / num_classes
    return acc <= p + 2 * math.sqrt(p * (1 - p) / n)


def build(
    cfg, plan, *, ident: str, images: dict, metrics: dict, records: list, reference, budget: dict | None
) -> Results:
    """A finished job's results.json body: the run, its metrics, its reference's (`reference`: the
    job's Reference, with cfg, record and metrics), its stages, and the budget's verdict."""
    curve = (
        [v for r in records for v in r.get("val/acc_per_epoch", [])]
        if plan
        else reference.record.get("val/acc_per_epoch", [])
    )  # validation per epoch of this run's fits (a baseline run: its own)
    labels = " + ".join(s.label(cfg) for s in plan) or "baseline"
    if budget is not None and not (budget["held/val"] and budget.get("certified", True)):
        labels += " [over budget]"
    out = {
        "run": {
            "technique": cfg.technique.name,
            "label": labels,
            "dataset": cfg.dataset.name,
            "model": cfg.model.name,
            "teacher": cfg.teacher.name if plan and plan[0].uses_teacher else None,
            "seed": cfg.seed,
            "config_hash": ident,
            "run_dir": str(Path(cfg.paths.run_dir)),
            "images": images,
        },
        **metrics,
        "val/acc_per_epoch": curve,
        "val/acc_best": max(curve, default=None),
        "train/time_s": sum(r.get("train/time_s", 0) for r in records)
        if plan
        else reference.record.get("train/time_s"),
        "baseline": {
            "model": reference.cfg.name,
            **reference.metrics,
            "cache_entry": reference.record.get("cache_entry"),
            "trained_now": reference.record.get("trained_now"),
            "at_chance": bool(reference.record.get("at_chance")),
        },  # on validation, after its fit
        "stages": records,
    }
    out["run"]["at_chance"] = at_chance(metrics["test/acc"], images["test"], cfg.dataset.num_classes) or (
        not plan and out["baseline"]["at_chance"]
    )  # a baseline run is its baseline
    if out["run"]["at_chance"]:
        log.warning(
            "%s: test/acc %.4f is chance level for %d classes; flagged at_chance in results.json",
            labels,
            metrics["test/acc"],
            cfg.dataset.num_classes,
        )
    if budget is not None:
        out["budget"] = budget
    return out
