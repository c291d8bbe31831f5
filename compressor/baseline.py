"""The reference model a job compresses: the trained baseline, or for distillation the teacher.
Given as a checkpoint, or trained once per recipe and data and kept in the cache (compressor.storage.cache);
a model trained to chance accuracy is never cached."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from compressor import runtimes
from compressor.errors import ConfigError, Stuck, brief
from compressor.modules import Classifier
from compressor.results import at_chance
from compressor.storage import artifact, cache, checkpoint
from compressor.training import ddp
from compressor.training.fit import fit, optim_args

log = logging.getLogger("compressor")


def plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


# keys added since jobs were first cached, and the value that trains (or exports) what was before them: at
# it, they stay out of every key, so the baselines and results keyed before them are still found (the
# data fingerprint holds the subset; channels_last is a memory layout: it changes float rounding, as
# the thread count does, not the recipe)
ADDED = {
    "dataset": {"train_size": None},
    "train": {"patience": None, "channels_last": True},
    "export": {"test": True, "runtimes": [], **{runtimes.keys()[name]: False for name in runtimes.LATER}},
    "budget": {"confidence": 0.95},
}


def unset_added(node: dict, where: str) -> dict:
    before = ADDED[where]
    return {k: v for k, v in node.items() if not (k in before and v == before[k])}


# where a data set's files are, not what they hold: out of every key whose data are fingerprinted by
# content, so the same job in two clones (or on nodes that check the project out in other folders) is
# one job (issue 55). num_workers (how they are read) was always out of the cache's key; it stays in
# a job's, where it always was: taking it out would change every job's key
WHERE = ("data_dir", "extract_dir", "download")


def spec_of(cfg: DictConfig, leave_out=(), data: dict | None = None) -> dict:
    """The resolved config minus where things are written (and `leave_out`), as keyed; with `data`
    fingerprinted by content, minus where the data's files are."""
    spec = {k: v for k, v in plain(cfg).items() if k not in ("paths", "rerun", "ddp", *leave_out)}
    if data and data.get("data") and isinstance(spec.get("dataset"), dict):
        spec["dataset"] = {k: v for k, v in spec["dataset"].items() if k not in WHERE}
    for where in ADDED:
        if where in spec:
            spec[where] = unset_added(spec[where], where)
    spec["technique"].pop(
        "model_without_kd", None
    )  # what it decides is the model, keyed below it: jobs keep their keys
    spec["technique"] = unset_stage_added(spec["technique"])
    return spec


# a stage's keys added since its fits were first cached, at the value that fits as before (issue 57's
# recovery stops): out of every key at that value, in a stage or in each of a pipeline's sections
STAGE_ADDED = {"patience": None, "stop_within": False, "cost": "macs", "speedup": None, "round_to": None}


def unset_stage_added(node):
    if not isinstance(node, dict):
        return node
    return {
        k: unset_stage_added(v) if isinstance(v, dict) and "_target_" in v else v  # a pipeline's section
        for k, v in node.items()
        if not (k in STAGE_ADDED and v == STAGE_ADDED[k])
    }


def hashed(cfg: DictConfig, spec: dict, data: dict) -> str:
    text = json.dumps({**spec, **data}, sort_keys=True, default=str)
    # a value resolved from paths.run_dir (quant's callback.workdir) is where, not what: the same job
    # in another folder (a search's trial, a rerun under a new timestamp) is the same job
    text = text.replace(json.dumps(str(cfg.paths.run_dir))[1:-1], "<run_dir>")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def fingerprint(cfg: DictConfig, data: dict) -> str:
    """Hash of the resolved config minus where things are written, plus the data's fingerprint:
    the identity of a job (its finished results, and the checkpoints a rerun resumes from)."""
    return hashed(cfg, spec_of(cfg, data=data), data)


def is_rank_zero() -> bool:
    """This process is DDP's rank 0, or the only one. Read where it is asked: a child rank knows it
    from the start (its launcher set its rank), and rank 0 is 0 before and after its ranks exist."""
    return cache.rank() == 0


def build_net(net_cfg: DictConfig, key: str) -> torch.nn.Module:
    """The architecture, built once before any training: bad arguments for it are one line."""
    try:
        return instantiate(net_cfg)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, ConfigError):  # a factory names its own argument ("net.weights=..."): say whose
            text = str(cause)
            raise ConfigError(f"{key.split('.')[0]}.{text}" if text.startswith("net.") else text) from None
        raise ConfigError(
            f"{key}: {net_cfg._target_} cannot be built with these arguments ({brief(cause, 300)})"
        ) from None


def trust(cfg) -> dict:
    """What a given file may do: load pickles (trust.checkpoint) and name which model factories."""
    targets = [*cfg.trust.targets, *(cfg[k].net._target_ for k in ("model", "teacher"))]  # the config's own nets
    return {"trust": cfg.trust.checkpoint, "targets": tuple(targets)}


def trained(cfg, net_cfg: DictConfig, dm, data: dict, run_dir: Path, key: str):
    """A trained model for `net_cfg` (model or teacher): a given checkpoint, or the cache (train if absent)."""
    if net_cfg.get("checkpoint"):
        model = checkpoint.load(net_cfg.checkpoint, f"{key}.checkpoint", plain(net_cfg.net), **trust(cfg))
        # re-saved in the artifact format, so its size compares like with like (no optimizer state)
        path = (
            artifact.save(
                model,
                run_dir / f"{key}_checkpoint.safetensors",
                plain(net_cfg.net),
                [{"stage": "checkpoint", "path": str(net_cfg.checkpoint)}],
            )
            if is_rank_zero()
            else None
        )
        return model, {"checkpoint": str(net_cfg.checkpoint)}, path
    dataset = unset_added({k: v for k, v in plain(cfg.dataset).items() if k not in ("num_workers", *WHERE)}, "dataset")
    limits = {
        k: plain(cfg.trainer[k])
        for k in ("limit_train_batches", "accumulate_grad_batches", "precision", "gradient_clip_val")
        if k in cfg.trainer
    }
    spec = {
        "dataset": dataset,
        **data,
        "model": {"name": net_cfg.name, **plain(net_cfg.net)},
        "train": unset_added(plain(cfg.train), "train"),
        "trainer": limits,
        "seed": cfg.seed,
    }

    def build(folder: Path) -> dict:
        patience = cfg.train.get("patience")
        log.info(
            "training %s on %s (%s): nothing cached for this recipe",
            net_cfg.name,
            cfg.dataset.name,
            f"up to {cfg.train.epochs} epochs, stopping after {patience} without a better val/acc"
            if patience
            else f"{cfg.train.epochs} epochs",
        )
        L.seed_everything(cfg.seed, workers=True)
        module = Classifier(instantiate(net_cfg.net), dm.num_classes, **optim_args(cfg))
        record = fit(
            cfg,
            module,
            dm,
            run_dir,
            f"train_{net_cfg.name}",
            cfg.train.epochs,
            checkpoint_dir=folder / "checkpoints",
            keep_best=True,
            knob=f"train.lr={cfg.train.lr}",
            patience=patience,
        )
        record["at_chance"] = at_chance(record["val/acc_best"], len(dm.val_dataloader().dataset), dm.num_classes)
        artifact.save(module.model, folder / artifact.FILENAME, plain(net_cfg.net), [{"stage": "train", **record}])
        return record

    wait_s = ddp.timeout_s(cfg) if ddp.distributed(cfg) else None  # a DDP rank waits no longer than its peers do
    try:
        entry, record, built = cache.fetch_or_build(
            cfg.paths.cache_dir, spec, build, keep=lambda r: not r.get("at_chance"), wait_s=wait_s
        )
    except cache.Waited as exc:
        raise Stuck(
            f"train_{net_cfg.name}", cache.rank(), ddp.processes(cfg.trainer), str(exc), wait_s, ddp.continue_command()
        ) from None
    model = artifact.load(entry / artifact.FILENAME, trust(cfg)["targets"])
    if not is_rank_zero():  # a DDP rank's private copy of the fit; rank 0 stored the entry
        if built:
            cache.discard(entry)
        return model, record, None
    if record.get("at_chance"):  # never cached: kept in this run's folder only, and flagged
        log.warning(
            "%s trained to chance accuracy (best val/acc %.4f, %d classes): not cached; raise train.epochs "
            "or change train.lr",
            net_cfg.name,
            record["val/acc_best"],
            dm.num_classes,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(entry / artifact.FILENAME, run_dir / f"{key}_at_chance.safetensors"))
        cache.discard(entry)
        return model, {**record, "trained_now": True}, path
    if not built:
        log.info("reused cached %s from %s (trained once, not retrained)", net_cfg.name, entry)
    return model, {**record, "cache_entry": str(entry), "trained_now": built}, entry / artifact.FILENAME
