"""One job, read top to bottom:

cfg -> datamodule -> reference (the baseline, or the teacher: cached, load or train) -> each
stage's `apply` in order (compressor/techniques) -> measure -> results.json + TensorBoard.

The job knows no technique by name: a stage is whatever class its config's `_target_` names
(compressor.techniques.base.Stage). Values were checked before torch loaded (compressor.validate,
called by the command line and by compressor.run)."""

import copy
import json
import logging
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from compressor import baseline, console, measure, prefixes, preflight, prepare, results
from compressor.baseline import is_rank_zero, plain
from compressor.budget import Budget
from compressor.data import user as datamodule
from compressor.data.base import example_input
from compressor.data.fingerprint import of as fingerprint_data
from compressor.errors import ConfigError
from compressor.runtimes import deploy as runtimes
from compressor.saving import CORRECT, remove_new_files, save, save_model
from compressor.storage import artifact
from compressor.techniques.base import Context, build
from compressor.training import ddp

log = logging.getLogger("compressor")


def main(cfg: DictConfig):
    """One job under Hydra or compressor.run: what a failed job wrote is removed again."""
    console.quiet()
    ddp.children_run_this_job_only()
    slurm_threads()
    env_before = ddp.environment()
    run_dir = Path(cfg.paths.run_dir)
    before = set(run_dir.rglob("*")) if run_dir.is_dir() else set()
    try:
        return job(cfg)
    except InstantiationException as exc:  # hydra wraps errors raised in constructors
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise
    except (ConfigError, OSError):  # bad input, divergence, a full disk: no file of this job stays
        remove_new_files(run_dir, before)
        raise
    finally:
        ddp.teardown(env_before)


def slurm_threads() -> None:
    """In a SLURM job, torch's threads are the CPUs SLURM gave it (`cpus_per_task`) unless
    OMP_NUM_THREADS says otherwise: torch would start one per core of the node, which other jobs
    share (a 1-CPU digits job on a 2-core node beside another ran ~10x slower)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(cpus))


@dataclass
class Reference:
    """The model a job compresses or distils from (the baseline, or the teacher), as measured."""

    cfg: DictConfig  # its model config (model or teacher)
    model: object
    path: Path | None  # its artifact (the cache entry's file)
    record: dict  # how it was trained (the cache's record)
    metrics: dict = field(default_factory=dict)
    logits: object = None  # on the test set
    correct: dict = field(default_factory=dict)  # split -> a bool per image (correct.json)


def job(cfg: DictConfig):
    prepare.prepared(cfg)
    run_dir, index = Path(cfg.paths.run_dir), Path(cfg.paths.index_dir)
    L.seed_everything(cfg.seed, workers=True)
    dm = datamodule.build(cfg.dataset)
    data = fingerprint_data(dm, cfg.dataset)
    ident = baseline.fingerprint(cfg, data)
    done, partial = index / f"{ident}.json", index / f"{ident}.partial"  # partial: the stages' last checkpoints
    earlier = finished(cfg, done, run_dir)
    if earlier is not None:
        return objective(cfg, earlier)

    plan = build(cfg.technique)
    example = example_input(cfg.dataset.in_channels, cfg.dataset.image_size)
    model, reference = starting_point(cfg, plan, dm, data, example)
    ctx = Context(cfg, dm, reference.model, run_dir, list(example.shape))
    spend = Budget(cfg, plan, reference.model, dm, ctx.shape, run_dir)
    model, records = compressed(plan, model, ctx, spend, partial, data)
    if not is_rank_zero():  # a DDP rank's fit is done; rank 0 measures and writes
        return None

    run_dir.mkdir(parents=True, exist_ok=True)
    metrics, logits, model_path, correct = measured(cfg, plan, model, reference, records, ctx, dm, example)
    answers = {"baseline": reference.correct, "files": {"model": correct}}  # correct.json
    out = results.build(
        cfg,
        plan,
        ident=ident,
        images=images(dm),
        metrics=metrics,
        records=records,
        reference=reference,
        budget=spend.report(metrics, reference.metrics),
    )
    for stage in plan:
        out.update(stage.report(logits, reference.logits, reference.metrics))
    out.update(deployed(cfg, plan, model, model_path, ctx, dm, example, metrics, answers["files"]))
    save(cfg, plan, out, done, partial, answers)
    return objective(cfg, out)


# -- the job's steps --------------------------------------------------------------------------
def finished(cfg, done: Path, run_dir: Path) -> dict | None:
    """The results of an earlier job with this exact config and data, copied into this run's folder
    (rerun=true runs it again)."""
    if cfg.rerun or not done.is_file():
        return None
    earlier = Path(json.loads(done.read_text())["results"])
    if not earlier.is_file():
        return None
    if not (earlier.parent / CORRECT).is_file():  # from before issue 55: its figures cannot be recomputed
        log.info("running again: %s keeps no answers image by image (%s)", earlier, CORRECT)
        return None
    log.info("skipping: %s already holds results for this exact config (rerun=true to run again)", earlier)
    out = results.read(earlier)
    out.setdefault("run", {})["reused_from"] = str(earlier)
    results.write(run_dir / "results.json", out)
    return out


def architectures(cfg, dm, distilling: bool):
    """The model's architecture (for distillation the student, possibly from a checkpoint) and the
    teacher's, each run once on a real batch: a wrong shape or class count is one line now."""
    from compressor.storage import checkpoint

    student = (
        checkpoint.load(cfg.model.checkpoint, "model.checkpoint", plain(cfg.model.net), **baseline.trust(cfg))
        if distilling and cfg.model.checkpoint
        else baseline.build_net(cfg.model.net, "model.net")
    )
    images = preflight.first_batch(dm)
    preflight.forward(student, images, "model.net", dm.num_classes)
    teacher = None
    if distilling:
        teacher = baseline.build_net(cfg.teacher.net, "teacher.net")
        preflight.forward(teacher, images, "teacher.net", dm.num_classes)
    return student, teacher


def starting_point(cfg, plan, dm, data, example) -> tuple[object, Reference]:
    """The model the stages start from and the reference it is measured against: the trained baseline
    and a copy of it, or for distillation the student and the trained teacher."""
    distilling = bool(plan) and plan[0].uses_teacher
    student, teacher = architectures(cfg, dm, distilling)
    for stage in plan:
        stage.check(student, teacher)
    net_cfg, key = (cfg.teacher, "teacher") if distilling else (cfg.model, "model")
    trained, record, path = baseline.trained(cfg, net_cfg, dm, data, Path(cfg.paths.run_dir), key)
    reference = Reference(net_cfg, trained, path, record)
    if is_rank_zero():
        reference.metrics, reference.logits, reference.correct = evaluated_once(reference, dm, example, data)
        reference.metrics.update({k: reference.record.get(k) for k in ("val/acc_per_epoch", "train/time_s")})
    return (student if distilling else copy.deepcopy(reference.model)), reference


def compressed(plan, model, ctx: Context, spend: Budget, partial: Path, data: dict) -> tuple[object, list[dict]]:
    """Each stage's `apply` in order, each fit resumable: a fine-tuning stage's from the folder every
    job with the same pipeline prefix shares (compressor/prefixes.py), the others' from the job's own
    under `partial`; with budget.max_drop, each stage first searches its recipe (compressor/budget.py)."""
    records, stages = [], [plain(stage.node) for stage in plan]
    for i, stage in enumerate(plan):
        spend.before(stage, model)
        ctx.goal = spend.goal()
        log.info("stage %s (%d epochs)", stage.kind, stage.epochs(ctx))
        L.seed_everything(ctx.cfg.seed, workers=True)
        shared = (
            prefixes.claimed(ctx.cfg, data, stages, i, stage.epochs(ctx))
            if prefixes.shared(ctx.cfg, stage, spend.active)
            else nullcontext(partial / f"{i}_{stage.kind}")
        )
        with shared as ctx.checkpoint_dir:
            model, record = stage.apply(model, ctx)
        spend.after(model)
        records.append({"stage": stage.kind, **record, **prefixes.reused(record)})  # its recipe is in record
    return model, records


def images(dm) -> dict:
    return {split: len(getattr(dm, f"{split}_dataloader")().dataset) for split in ("train", "val", "test")}


def evaluate(model, dm, example, artifact_path=None, float_model=None) -> tuple[dict, object, dict]:
    """Accuracy, size, parameters, MACs (latency is measured side by side at the end), the test
    logits, and which images of each split the model gets right (correct.json)."""
    logits, labels = measure.predict(model, dm.test_dataloader())
    val_logits, val_labels = measure.predict(model, dm.val_dataloader())
    out = {"test/acc": measure.accuracy(logits, labels), "val/acc": measure.accuracy(val_logits, val_labels)}
    out.update(measure.profile(model, example, artifact_path, float_model=float_model))
    return out, logits, {"val": measure.correct(val_logits, val_labels), "test": measure.correct(logits, labels)}


_EVALUATED: dict = {}  # (file, its mtime, data) -> (metrics, test logits): a search's trials share one reference


def evaluated_once(reference: Reference, dm, example, data: dict) -> tuple[dict, object, dict]:
    """`evaluate` of a reference file, once per process: every trial of a search (one process) starts
    from the same cached baseline or teacher, and measured it again on test and validation each time."""
    if not reference.path:  # a DDP rank other than 0 has no file
        return evaluate(reference.model, dm, example, reference.path)
    key = (str(reference.path), Path(reference.path).stat().st_mtime_ns, json.dumps(data, sort_keys=True, default=str))
    if key not in _EVALUATED:
        if len(_EVALUATED) >= 8:
            _EVALUATED.pop(next(iter(_EVALUATED)))
        _EVALUATED[key] = evaluate(reference.model, dm, example, reference.path)
    metrics, logits, correct = _EVALUATED[key]
    return dict(metrics), logits, correct


def timed(models: dict, example, cfg) -> dict:
    return measure.latencies(models, example, cfg.latency.threads, cfg.latency.reps, cfg.latency.rounds)


def measured(cfg, plan, model, reference: Reference, records, ctx, dm, example):
    """The run's model saved and measured, timed side by side with the reference (a baseline run is its
    reference); the reference's latencies join its metrics."""
    run_dir = ctx.run_dir
    if not plan:
        model_path = run_dir / artifact.FILENAME
        shutil.copyfile(reference.path, model_path)
        reference.metrics.update(timed({"baseline": reference.model}, example, cfg)["baseline"])
        return (
            {**reference.metrics, "compress/size_mb": measure.size_mb(model_path)},
            reference.logits,
            model_path,
            reference.correct,
        )
    model_path = save_model(model, run_dir, cfg, records, ctx.float_model)
    metrics, logits, correct = evaluate(model, dm, example, model_path, ctx.float_model)
    speed = timed({"baseline": reference.model, "model": model}, example, cfg)
    reference.metrics.update(speed["baseline"])
    metrics.update(speed["model"])
    return metrics, logits, model_path, correct


def deployed(cfg, plan, model, model_path, ctx, dm, example, metrics, correct: dict) -> dict:
    """Every runtime's file, checked and timed beside the run's model and the baseline: which one to ship
    (`correct` gains each file's answers, image by image)."""
    if not runtimes.wanted(cfg, model):
        return {}
    shaping = next((s for s in plan if s.precision()), None)  # the first stage that changes the number format
    return runtimes.measured(
        model,
        model_path,
        ctx.float_model,
        dm,
        example,
        ctx.run_dir,
        cfg,
        shaping.precision() if shaping else "fp32",
        shaping.node.get("calibration_batches", 32) if shaping else 32,
        metrics["test/acc"],
        metrics["val/acc"],
        baseline=ctx.reference,
        correct=correct,
    )


def objective(cfg, out: dict) -> float:
    """What a hyperparameter search maximises: validation accuracy (a search that selected on the
    test set would report a test figure it had fitted), or -1 over the size budget."""
    budget = cfg.get("size_budget_mb")
    if budget is not None and out["compress/size_mb"] > budget:
        return -1.0
    return float(out["val/acc"])
