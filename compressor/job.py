"""One job, read top to bottom:

cfg -> datamodule -> reference (the baseline, or the teacher: cached, load or train) -> each
stage's `apply` in order (compressor/stages) -> measure -> results.json + TensorBoard.

The job knows no technique by name: a stage is whatever class its config's `_target_` names
(compressor.stages.base.Stage). Values were checked before torch loaded (compressor.validate,
called by the command line and by compressor.run)."""
import copy
import json
import logging
import shutil
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from compressor import baseline, console, measure, preflight, results, validate
from compressor.storage import artifact
from compressor.training import ddp
from compressor.runtimes import onnx as export
from compressor.runtimes import deploy as runtimes
from compressor.baseline import is_rank_zero, plain
from compressor.data import user as datamodule
from compressor.data.base import example_input
from compressor.data.fingerprint import of as fingerprint_data
from compressor.errors import ConfigError
from compressor.search.budget import Budget
from compressor.stages.base import Context, build
from compressor.training.fit import at_chance

log = logging.getLogger("compressor")


def main(cfg: DictConfig):
    """One job under Hydra or compressor.run: what a failed job wrote is removed again."""
    console.quiet()
    ddp.children_run_this_job_only()
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


def job(cfg: DictConfig):
    chosen_model(cfg)
    name_models(cfg)
    validate.trainer(cfg)
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
    distilling = bool(plan) and plan[0].uses_teacher  # then the model is the student, the reference the teacher
    student, teacher = architectures(cfg, dm, distilling)
    for stage in plan:
        stage.check(student, teacher)
    reference_cfg, key = (cfg.teacher, "teacher") if distilling else (cfg.model, "model")
    reference, reference_record, reference_path = baseline.trained(cfg, reference_cfg, dm, data, run_dir, key)
    model = student if distilling else copy.deepcopy(reference)
    if is_rank_zero():
        reference_metrics, reference_logits = evaluate(reference, dm, example, reference_path)
        reference_metrics.update({k: reference_record.get(k) for k in ("val/acc_per_epoch", "train/time_s")})

    ctx = Context(cfg, dm, reference, run_dir, list(example.shape))
    spend = Budget(cfg, plan, reference, dm, ctx.shape, run_dir)
    records = []
    for i, stage in enumerate(plan):
        spend.before(stage, model)  # with budget.max_drop: the stage searches its recipe into its overrides
        log.info("stage %s (%d epochs)", stage.kind, stage.epochs(ctx))
        L.seed_everything(cfg.seed, workers=True)
        ctx.checkpoint_dir = partial / f"{i}_{stage.kind}"
        model, record = stage.apply(model, ctx)
        spend.after(model)
        records.append({"stage": stage.kind, **record})  # the recipe (amounts, keep_float) is in record
    if not is_rank_zero():
        return None

    run_dir.mkdir(parents=True, exist_ok=True)
    metrics, logits, model_path = measured(cfg, plan, model, reference, reference_path, reference_metrics,
                                           reference_logits, records, ctx, dm, example)
    out = collect(cfg, plan, dm, ident, metrics, logits, records, reference_cfg, reference_record, reference_metrics)
    if spend.active:
        out["budget"] = spend.report(metrics, reference_metrics)
        out["run"]["label"] += "" if out["budget"]["held/val"] else " [over budget]"
    if distilling:
        out["kd"] = {"teacher/test_acc": reference_metrics["test/acc"],
                     "test/agreement": (logits.argmax(1) == reference_logits.argmax(1)).float().mean().item()}
    out.update(deployed(cfg, plan, model, model_path, ctx, dm, example, metrics))
    save(cfg, plan, out, done, partial)
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
    log.info("skipping: %s already holds results for this exact config (rerun=true to run again)", earlier)
    out = results.read(earlier)
    out.setdefault("run", {})["reused_from"] = str(earlier)
    results.write(run_dir / "results.json", out)
    return out


def architectures(cfg, dm, distilling: bool):
    """The model's architecture (for distillation the student, possibly from a checkpoint) and the
    teacher's, each run once on a real batch: a wrong shape or class count is one line now."""
    from compressor.storage import checkpoint

    student = checkpoint.load(cfg.model.checkpoint, "model.checkpoint", plain(cfg.model.net), **baseline.trust(cfg)) \
        if distilling and cfg.model.checkpoint else baseline.build_net(cfg.model.net, "model.net")
    images = preflight.first_batch(dm)
    preflight.forward(student, images, "model.net", dm.num_classes)
    teacher = None
    if distilling:
        teacher = baseline.build_net(cfg.teacher.net, "teacher.net")
        preflight.forward(teacher, images, "teacher.net", dm.num_classes)
    return student, teacher


def evaluate(model, dm, example, artifact_path=None, float_model=None) -> tuple[dict, object]:
    """Accuracy, size, parameters, MACs (latency is measured side by side at the end)."""
    logits, labels = measure.predict(model, dm.test_dataloader())
    val_logits, val_labels = measure.predict(model, dm.val_dataloader())
    out = {"test/acc": measure.accuracy(logits, labels), "val/acc": measure.accuracy(val_logits, val_labels)}
    out.update(measure.profile(model, example, artifact_path, float_model=float_model))
    return out, logits


def timed(models: dict, example, cfg) -> dict:
    return measure.latencies(models, example, cfg.latency.threads, cfg.latency.reps, cfg.latency.rounds)


def measured(cfg, plan, model, reference, reference_path, reference_metrics, reference_logits, records, ctx, dm, example):
    """The run's model saved and measured, timed side by side with the reference (a baseline run is its reference)."""
    run_dir = ctx.run_dir
    if not plan:
        model_path = run_dir / artifact.FILENAME
        shutil.copyfile(reference_path, model_path)
        reference_metrics.update(timed({"baseline": reference}, example, cfg)["baseline"])
        metrics = {**reference_metrics, "compress/size_mb": measure.size_mb(model_path)}
        return metrics, reference_logits, model_path
    model_path = save_model(model, run_dir, cfg, records, ctx.float_model)
    metrics, logits = evaluate(model, dm, example, model_path, ctx.float_model)
    speed = timed({"baseline": reference, "model": model}, example, cfg)
    reference_metrics.update(speed["baseline"])
    metrics.update(speed["model"])
    return metrics, logits, model_path


def collect(cfg, plan, dm, ident, metrics, logits, records, reference_cfg, reference_record, reference_metrics) -> dict:
    """results.json's body (compressor.results.Results)."""
    # validation accuracy per epoch of this run's own fits (stages joined); the baseline's for baseline
    curve = [v for r in records for v in r.get("val/acc_per_epoch", [])] if plan else \
        reference_record.get("val/acc_per_epoch", [])
    images = {split: len(getattr(dm, f"{split}_dataloader")().dataset) for split in ("train", "val", "test")}
    out = {
        "run": {"technique": cfg.technique.name, "label": " + ".join(s.label(cfg) for s in plan) or "baseline",
                "dataset": cfg.dataset.name, "model": cfg.model.name,
                "teacher": cfg.teacher.name if plan and plan[0].uses_teacher else None, "seed": cfg.seed,
                "config_hash": ident, "run_dir": str(Path(cfg.paths.run_dir)), "images": images},
        **metrics,
        "val/acc_per_epoch": curve,
        "val/acc_best": max(curve, default=None),
        "train/time_s": sum(r.get("train/time_s", 0) for r in records) if plan else reference_record.get("train/time_s"),
        "baseline": {"model": reference_cfg.name, **reference_metrics, "cache_entry": reference_record.get("cache_entry"),
                     "trained_now": reference_record.get("trained_now")},
        "stages": records,
    }
    out["baseline"]["at_chance"] = bool(reference_record.get("at_chance"))  # on validation, after its fit
    out["run"]["at_chance"] = at_chance(metrics["test/acc"], len(logits), dm.num_classes) or \
        (not plan and out["baseline"]["at_chance"])  # a baseline run is its baseline
    if out["run"]["at_chance"]:
        log.warning("%s: test/acc %.4f is chance level for %d classes; flagged at_chance in results.json",
                    out["run"]["label"], metrics["test/acc"], dm.num_classes)
    return out


def deployed(cfg, plan, model, model_path, ctx, dm, example, metrics) -> dict:
    """Every runtime's file, checked and timed beside the run's model and the baseline: which one to ship."""
    if not runtimes.wanted(cfg, model):
        return {}
    shaping = next((s for s in plan if s.precision()), None)  # the first stage that changes the number format
    return runtimes.measured(model, model_path, ctx.float_model, dm, example, ctx.run_dir, cfg,
                             shaping.precision() if shaping else "fp32",
                             shaping.node.get("calibration_batches", 32) if shaping else 32, metrics["test/acc"],
                             metrics["val/acc"], baseline=ctx.reference)


def save(cfg, plan, out: dict, done: Path, partial: Path) -> None:
    """results.json and the resolved config, then the index entry that marks the job finished
    (written last: a job killed before it is run again), TensorBoard and the summary line."""
    run_dir = Path(cfg.paths.run_dir)
    results.write(run_dir / "results.json", out)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    results.write(done, {"results": str(run_dir / "results.json")})
    shutil.rmtree(partial, ignore_errors=True)  # the job is done: nothing left to resume
    log_to_tensorboard(cfg, plan, run_dir, out)
    print(results.summary_line(out))


def save_model(model, run_dir: Path, cfg, records, float_model=None) -> Path:
    if isinstance(model, export.RuntimeModel):  # an onnxruntime/openvino backend's file is the artifact
        return model.path
    history = [{k: v for k, v in r.items() if k != "rows"} for r in records]  # scan rows: results.json only
    return artifact.save(model, run_dir / artifact.FILENAME, plain(cfg.model.net), history, float_model)


def remove_new_files(run_dir: Path, before: set) -> None:
    """What a failed job wrote into its run folder, Hydra's own files (.hydra/, the log) aside."""
    for path in sorted(set(run_dir.rglob("*")) - before, reverse=True) if run_dir.is_dir() else ():
        if ".hydra" in path.relative_to(run_dir).parts or path.suffix == ".log":
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)


def given_keys() -> set | None:
    """The keys the command line (or compressor.run's overrides) set; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}


def chosen_model(cfg: DictConfig) -> None:
    """technique=pipeline makes the model student_of_<teacher> for its kd-first order; an order
    without kd compresses the model the user named: the teacher's (the baseline) unless `model=` was
    given (`technique.model_without_kd: teacher`). Outside Hydra nothing is known, so nothing changes."""
    if cfg.technique.get("model_without_kd") != "teacher" or "kd" in list(cfg.technique.get("order") or []):
        return
    given = given_keys()
    if given is not None and "model" not in given:
        with open_dict(cfg):
            cfg.model = copy.deepcopy(cfg.teacher)


def name_models(cfg: DictConfig) -> None:
    """A model's `name` labels reports and TensorBoard. With none given, or when the command line
    swapped a group's `net._target_` but not its `name` (which then describes another model), the
    name is the target's class name, never a stale default."""
    given = given_keys() or set()
    with open_dict(cfg):
        for key in ("model", "teacher"):
            stale = f"{key}.net._target_" in given and f"{key}.name" not in given
            if stale or not cfg[key].get("name"):
                cfg[key].name = str(cfg[key].net._target_).rsplit(".", 1)[-1]


def log_to_tensorboard(cfg, plan, run_dir: Path, out: dict) -> None:
    """The run's scalars, and its knobs as hparams: every stage's, under its full key."""
    if not cfg.get("logger"):
        return
    logger = instantiate(cfg.logger, save_dir=str(run_dir), version="summary")
    scalars = {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    hparams = {"technique": cfg.technique.name, "dataset": cfg.dataset.name, "model": cfg.model.name, "seed": cfg.seed}
    for stage in plan:
        hparams.update(stage.knobs())
    logger.log_hyperparams(hparams, scalars)
    logger.log_metrics(scalars)
    logger.finalize("success")


def objective(cfg, out: dict) -> float:
    """What a hyperparameter search maximises: validation accuracy (a search that selected on the
    test set would report a test figure it had fitted), or -1 over the size budget."""
    budget = cfg.get("size_budget_mb")
    if budget is not None and out["compress/size_mb"] > budget:
        return -1.0
    return float(out["val/acc"])
