"""One job, read top to bottom:

cfg -> datamodule -> baseline (cached: load or train) -> technique stages (callbacks on a
fine-tune fit, or the distillation module) -> measure -> results.json + TensorBoard."""
import copy
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from compressor import (artifact, budget, cache, checkpoint, console, ddp, export, measure, preflight, recover, runtimes,
                        validate)
from compressor.train import at_chance, fit, optim_args
from compressor.data import user as datamodule
from compressor.data.base import example_input
from compressor.data.fingerprint import of as fingerprint_data
from compressor.errors import ConfigError, brief
from compressor.modules import Classifier

log = logging.getLogger("compressor")


def plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


# dataset keys added since jobs were first cached: unset, they stay out of every key, so the
# baselines and results keyed before them are still found (the data fingerprint holds the subset)
ADDED = ("train_size",)


def unset_added(dataset: dict) -> dict:
    return {k: v for k, v in dataset.items() if not (k in ADDED and v is None)}


def fingerprint(cfg: DictConfig, data: dict) -> str:
    """Hash of the resolved config minus where things are written, plus the data's fingerprint:
    the identity of a job (its finished results, and the checkpoints a rerun resumes from)."""
    spec = {k: v for k, v in plain(cfg).items() if k not in ("paths", "rerun")}
    spec["dataset"] = unset_added(spec["dataset"])
    return hashlib.sha256(json.dumps({**spec, **data}, sort_keys=True, default=str).encode()).hexdigest()[:20]


def is_rank_zero() -> bool:
    return cache.rank() == 0


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a reused job's run folder may not exist yet (jobs composed outside Hydra)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=float))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no zero-byte .json.tmp behind
        raise


def build_net(net_cfg: DictConfig, key: str) -> torch.nn.Module:
    """The architecture, built once before any training: bad arguments for it are one line."""
    try:
        return instantiate(net_cfg)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{key}: {net_cfg._target_} cannot be built with these arguments "
                          f"({brief(cause, 300)})") from None


def trust(cfg) -> dict:
    """What a given file may do: load pickles (trust.checkpoint) and name which model factories."""
    targets = [*cfg.trust.targets, *(cfg[k].net._target_ for k in ("model", "teacher"))]  # the config's own nets
    return {"trust": cfg.trust.checkpoint, "targets": tuple(targets)}


def trained(cfg, net_cfg: DictConfig, dm, data: dict, run_dir: Path, key: str):
    """A trained model for `net_cfg` (model or teacher): a given checkpoint, or the cache (train if absent)."""
    if net_cfg.get("checkpoint"):
        model = checkpoint.load(net_cfg.checkpoint, f"{key}.checkpoint", plain(net_cfg.net), **trust(cfg))
        # re-saved in the artifact format, so its size compares like with like (no optimizer state)
        path = artifact.save(model, run_dir / f"{key}_checkpoint.safetensors", plain(net_cfg.net),
                             [{"stage": "checkpoint", "path": str(net_cfg.checkpoint)}]) if is_rank_zero() else None
        return model, {"checkpoint": str(net_cfg.checkpoint)}, path
    dataset = unset_added({k: v for k, v in plain(cfg.dataset).items()
                           if k not in ("num_workers", "data_dir", "extract_dir", "download")})
    limits = {k: plain(cfg.trainer[k]) for k in ("limit_train_batches", "accumulate_grad_batches", "precision",
                                                "gradient_clip_val") if k in cfg.trainer}
    spec = {"dataset": dataset, **data, "model": {"name": net_cfg.name, **plain(net_cfg.net)},
            "train": plain(cfg.train), "trainer": limits, "seed": cfg.seed}

    def build(folder: Path) -> dict:
        log.info("training %s on %s (%d epochs): nothing cached for this recipe", net_cfg.name, cfg.dataset.name,
                 cfg.train.epochs)
        L.seed_everything(cfg.seed, workers=True)
        module = Classifier(instantiate(net_cfg.net), dm.num_classes, **optim_args(cfg))
        record = fit(cfg, module, dm, run_dir, f"train_{net_cfg.name}", cfg.train.epochs,
                     checkpoint_dir=folder / "checkpoints", keep_best=True, knob=f"train.lr={cfg.train.lr}")
        record["at_chance"] = at_chance(record["val/acc_best"], len(dm.val_dataloader().dataset), dm.num_classes)
        artifact.save(module.model, folder / artifact.FILENAME, plain(net_cfg.net), [{"stage": "train", **record}])
        return record

    entry, record, built = cache.fetch_or_build(cfg.paths.cache_dir, spec, build,
                                                keep=lambda r: not r.get("at_chance"))
    model = artifact.load(entry / artifact.FILENAME, trust(cfg)["targets"])
    if not is_rank_zero():  # a DDP rank's private copy of the fit; rank 0 stored the entry
        if built:
            cache.discard(entry)
        return model, record, None
    if record.get("at_chance"):  # never cached: kept in this run's folder only, and flagged
        log.warning("%s trained to chance accuracy (best val/acc %.4f, %d classes): not cached; raise train.epochs "
                    "or change train.lr", net_cfg.name, record["val/acc_best"], dm.num_classes)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(entry / artifact.FILENAME, run_dir / f"{key}_at_chance.safetensors"))
        cache.discard(entry)
        return model, {**record, "trained_now": True}, path
    if not built:
        log.info("reused cached %s from %s (trained once, not retrained)", net_cfg.name, entry)
    return model, {**record, "cache_entry": str(entry), "trained_now": built}, entry / artifact.FILENAME


def evaluate(model, dm, example, artifact_path=None, float_model=None) -> dict:
    """Accuracy, size, parameters, MACs (latency is measured side by side at the end)."""
    logits, labels = measure.predict(model, dm.test_dataloader())
    val_logits, val_labels = measure.predict(model, dm.val_dataloader())
    out = {"test/acc": measure.accuracy(logits, labels), "val/acc": measure.accuracy(val_logits, val_labels)}
    out.update(measure.profile(model, example, artifact_path, float_model=float_model))
    return out, logits


def images_per_split(dm) -> dict:
    """How many images each split holds: what one image is worth in accuracy points."""
    return {split: len(getattr(dm, f"{split}_dataloader")().dataset) for split in ("train", "val", "test")}


def timed(models: dict, example, cfg) -> dict:
    return measure.latencies(models, example, cfg.latency.threads, cfg.latency.reps, cfg.latency.rounds)


# -- the job ----------------------------------------------------------------------------------
def main(cfg: DictConfig):
    """One job under Hydra (see compressor.cli, which checks values first and prints errors)."""
    console.quiet()
    ddp.children_run_this_job_only()
    env_before = ddp.environment()
    run_dir = Path(cfg.paths.run_dir)
    before = set(run_dir.rglob("*")) if run_dir.is_dir() else set()
    try:
        return _main(cfg)
    except InstantiationException as exc:  # hydra wraps errors raised in constructors
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise
    except (ConfigError, OSError):  # bad input, divergence, a full disk: no file of this job stays
        remove_new_files(run_dir, before)
        raise
    finally:
        ddp.teardown(env_before)


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


def _main(cfg: DictConfig):
    name_models(cfg)
    validate.values(cfg)  # everything that can be wrong is checked before any data is loaded or model trained
    validate.trainer(cfg)
    run_dir = Path(cfg.paths.run_dir)
    L.seed_everything(cfg.seed, workers=True)
    dm = datamodule.build(cfg.dataset)
    data = fingerprint_data(dm, cfg.dataset)
    ident = fingerprint(cfg, data)
    done = Path(cfg.paths.index_dir) / f"{ident}.json"
    partial = Path(cfg.paths.index_dir) / f"{ident}.partial"  # the stages' last checkpoints, until the job ends
    if not cfg.rerun and done.is_file():
        earlier = Path(json.loads(done.read_text())["results"])
        if earlier.is_file():
            log.info("skipping: %s already holds results for this exact config (rerun=true to run again)", earlier)
            results = json.loads(earlier.read_text())
            results.setdefault("run", {})["reused_from"] = str(earlier)
            write_json(run_dir / "results.json", results)
            return objective(cfg, results)

    example = example_input(cfg.dataset.in_channels, cfg.dataset.image_size)
    shape = list(example.shape)
    plan = [stage for _, stage in validate.stages(cfg.technique)]
    objects = []
    for stage in plan:
        if "distiller" in stage:
            objects.append(instantiate(stage.distiller, _partial_=True))
        else:
            objects.append(instantiate(stage.callback, example_shape=shape))
    distilling = bool(plan) and "distiller" in plan[0]
    student_arch = checkpoint.load(cfg.model.checkpoint, "model.checkpoint", plain(cfg.model.net), **trust(cfg)) \
        if distilling and cfg.model.checkpoint else build_net(cfg.model.net, "model.net")
    for stage, obj in zip(plan, objects):
        if hasattr(obj, "check"):
            obj.check(student_arch)
    images = preflight.first_batch(dm)
    preflight.forward(student_arch, images, "model.net", dm.num_classes)
    if distilling:
        teacher_arch = build_net(cfg.teacher.net, "teacher.net")
        preflight.forward(teacher_arch, images, "teacher.net", dm.num_classes)
        check_taps(plan[0], student_arch, teacher_arch)

    # the reference model: the trained baseline, or for distillation the teacher
    reference_cfg, reference_key = (cfg.teacher, "teacher") if distilling else (cfg.model, "model")
    reference, reference_record, reference_path = trained(cfg, reference_cfg, dm, data, run_dir, reference_key)
    model = student_arch if distilling else copy.deepcopy(reference)
    if is_rank_zero():
        reference_metrics, reference_logits = evaluate(reference, dm, example, reference_path)
        reference_metrics.update({k: reference_record.get(k) for k in ("val/acc_per_epoch", "train/time_s")})

    records, float_model = [], None
    spend = budget.Budget(cfg, plan, reference, dm, shape, run_dir)
    for i, (stage, obj) in enumerate(zip(plan, objects)):
        epochs = stage.epochs if getattr(obj, "fine_tunes", True) else 0
        resumable = dict(checkpoint_dir=partial / f"{i}_{stage.kind}", knob=f"{stage._get_full_key('lr')}={stage.get('lr')}")
        spend.before(stage, obj, model)  # with budget.max_drop: search this stage's recipe into `obj`
        log.info("stage %s (%d epochs)", stage.kind, epochs)
        L.seed_everything(cfg.seed, workers=True)
        pair = example_input(cfg.dataset.in_channels, cfg.dataset.image_size, 2)
        if "distiller" in stage:
            module = obj(student=model, teacher=reference, example=pair, num_classes=dm.num_classes,
                         **optim_args(cfg, stage.get("lr")))
            record = fit(cfg, module, dm, run_dir, stage.kind, epochs, **resumable)
            model = module.model
            record["weights"] = dict(module.weights)
        else:
            if stage.kind == "quant":
                float_model = copy.deepcopy(model)
            module = recover.module(stage, model, dm.num_classes, pair, optim_args(cfg, stage.get("lr")))
            record = fit(cfg, module, dm, run_dir, stage.kind, epochs, [obj], **resumable)
            record.update(obj.summary(), recover=stage.get("recover", "none"))
            model = obj.compressed if getattr(obj, "compressed", None) is not None else module.model
            if stage.kind == "prune":
                record["layer_sparsity"] = measure.layer_sparsity(model)
        spend.after(model)
        records.append({"stage": stage.kind, **record})  # the recipe (amounts, keep_float) is in record

    if not is_rank_zero():
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan:
        model_path = save_model(model, run_dir, cfg, records, float_model)
        metrics, logits = evaluate(model, dm, example, model_path, float_model)
        speed = timed({"baseline": reference, "model": model}, example, cfg)
        reference_metrics.update(speed["baseline"])
        metrics.update(speed["model"])
    else:
        model_path = run_dir / artifact.FILENAME
        shutil.copyfile(reference_path, model_path)
        reference_metrics.update(timed({"baseline": reference}, example, cfg)["baseline"])
        metrics, logits = dict(reference_metrics), reference_logits
        metrics["compress/size_mb"] = measure.size_mb(model_path)

    # validation accuracy per epoch of this run's own fits (stages joined); the baseline's for baseline
    curve = [v for r in records for v in r.get("val/acc_per_epoch", [])] if plan else \
        reference_record.get("val/acc_per_epoch", [])
    results = {
        "run": {"technique": cfg.technique.name, "label": label(cfg, plan), "dataset": cfg.dataset.name, "model": cfg.model.name,
                "teacher": cfg.teacher.name if distilling else None, "seed": cfg.seed, "config_hash": ident,
                "run_dir": str(run_dir), "images": images_per_split(dm)},
        **metrics,
        "val/acc_per_epoch": curve,
        "val/acc_best": max(curve, default=None),
        "train/time_s": sum(r.get("train/time_s", 0) for r in records) if plan else reference_record.get("train/time_s"),
        "baseline": {"model": reference_cfg.name, **reference_metrics, "cache_entry": reference_record.get("cache_entry"),
                     "trained_now": reference_record.get("trained_now")},
        "stages": records,
    }
    results["baseline"]["at_chance"] = bool(reference_record.get("at_chance"))  # on validation, after its fit
    results["run"]["at_chance"] = at_chance(metrics["test/acc"], len(logits), dm.num_classes) or \
        (not plan and results["baseline"]["at_chance"])  # a baseline run is its baseline
    if results["run"]["at_chance"]:
        log.warning("%s: test/acc %.4f is chance level for %d classes; flagged at_chance in results.json",
                    results["run"]["label"], metrics["test/acc"], dm.num_classes)
    if spend.active:
        results["budget"] = spend.report(metrics, reference_metrics)
        results["run"]["label"] += "" if results["budget"]["held/val"] else " [over budget]"
    if distilling:
        results["kd"] = {"teacher/test_acc": reference_metrics["test/acc"],
                         "test/agreement": (logits.argmax(1) == reference_logits.argmax(1)).float().mean().item()}
    if runtimes.wanted(cfg, model):  # every runtime's file, checked and timed: which one to ship
        quant = [stage for stage in plan if stage.kind == "quant"]  # a pipeline keeps its knobs per stage
        results.update(runtimes.measured(model, model_path, float_model, dm, example, run_dir, cfg,
                                         quant[0] if quant else None, metrics["test/acc"]))
    write_json(run_dir / "results.json", results)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    Path(cfg.paths.index_dir).mkdir(parents=True, exist_ok=True)
    write_json(done, {"results": str(run_dir / "results.json")})
    shutil.rmtree(partial, ignore_errors=True)  # the job is done: nothing left to resume
    log_to_tensorboard(cfg, run_dir, results)
    print(summary_line(results))
    return objective(cfg, results)


def name_models(cfg: DictConfig) -> None:
    """A model's `name` labels reports and TensorBoard. With none given, or when the command line
    swapped a group's `net._target_` but not its `name` (which then describes another model), the
    name is the target's class name, never a stale default."""
    from hydra.core.hydra_config import HydraConfig

    given = set()
    if HydraConfig.initialized():
        given = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    with open_dict(cfg):
        for key in ("model", "teacher"):
            stale = f"{key}.net._target_" in given and f"{key}.name" not in given
            if stale or not cfg[key].get("name"):
                cfg[key].name = str(cfg[key].net._target_).rsplit(".", 1)[-1]


def label(cfg, plan) -> str:
    """What tells this run apart from other runs of its technique in a report row."""
    parts = []
    within = f" within {cfg.budget.max_drop:g} pts" if cfg.budget.max_drop is not None else ""
    for stage in plan:
        searched = within if validate.budgeted(stage) else ""
        if stage.kind == "prune" and (searched or stage.get("amounts")):
            parts.append(f"prune {stage.method} per-layer" + searched)
        elif stage.kind == "prune":
            parts.append(f"prune {stage.method} {stage.scope} {stage.schedule} {stage.amount:g}")
        elif stage.kind == "quant":
            parts.append(f"quant {stage.mode} {stage.backend}" + (searched or (" keep float" if stage.get("keep_float") else "")))
        elif stage.kind == "kd":  # the preset's name, or the weights when they were set by hand
            weights = plain(stage.weights)
            loss = stage.loss if weights == plain(stage.presets.get(stage.loss, {})) else \
                " + ".join(f"{w:g} {term}" for term, w in weights.items())
            parts.append(f"kd {loss} from {cfg.teacher.name}")
        elif stage.kind == "sensitivity":
            parts.append("sensitivity scan")
        elif stage.kind == "cluster":
            parts.append(f"cluster {stage.bits} bits")
    return " + ".join(parts) if parts else "baseline"


def check_taps(stage, student, teacher) -> None:
    from compressor.losses import Tap

    d = stage.distiller
    weights = plain(d.weights)
    pairs = []
    if "cosine" in weights:
        pairs += [(student, d.student_hidden, "technique.student_hidden"), (teacher, d.teacher_hidden, "technique.teacher_hidden")]
    if "feature_mse" in weights:
        pairs += [(student, d.student_feature, "technique.student_feature"), (teacher, d.teacher_feature, "technique.teacher_feature")]
    for net, path, key in pairs:
        Tap(net, path, key).remove()


def save_model(model, run_dir: Path, cfg, records, float_model=None) -> Path:
    if isinstance(model, export.RuntimeModel):  # an onnxruntime/openvino backend's file is the artifact
        return model.path
    history = [{k: v for k, v in r.items() if k != "rows"} for r in records]  # scan rows: results.json only
    return artifact.save(model, run_dir / artifact.FILENAME, plain(cfg.model.net), history, float_model)


def log_to_tensorboard(cfg, run_dir: Path, results: dict) -> None:
    if not cfg.get("logger"):
        return
    logger = instantiate(cfg.logger, save_dir=str(run_dir), version="summary")
    scalars = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    hparams = {"technique": cfg.technique.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
               "seed": cfg.seed}
    for key in ("amount", "method", "mode", "backend", "loss", "temperature"):
        if key in cfg.technique:
            hparams[f"technique.{key}"] = cfg.technique[key]
    logger.log_hyperparams(hparams, scalars)
    logger.log_metrics(scalars)
    logger.finalize("success")


def summary_line(r: dict) -> str:
    b = r["baseline"]
    return (f"{r['run']['technique']:>9} {r['run']['model']} on {r['run']['dataset']}: "
            f"test/acc {r['test/acc']:.4f} (baseline {b['test/acc']:.4f}), "
            f"size {r['compress/size_mb']:.3f} MB (baseline {b['compress/size_mb']:.3f}), "
            f"latency b1 {r['latency/b1_ms']:.3f} ms (baseline {b['latency/b1_ms']:.3f}), "
            f"b64 {r['latency/b64_ms']:.4f} ms/img (baseline {b['latency/b64_ms']:.4f})")


def objective(cfg, results: dict) -> float:
    """What a hyperparameter search maximises: validation accuracy (a search that selected on the
    test set would report a test figure it had fitted), or -1 over the size budget."""
    budget = cfg.get("size_budget_mb")
    if budget is not None and results["compress/size_mb"] > budget:
        return -1.0
    return float(results["val/acc"])
