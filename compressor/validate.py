"""Every key a job reads is checked here, before any data is loaded or any model is trained.

`values` checks the top-level keys, train, latency, dataset, export, trust, every output folder,
and every stage of the technique through its own settings class (compressor/techniques/<name>/
settings.py). It imports nothing heavy, so a bad value is refused in about a second, before torch
and Lightning load. `trainer` then builds the Trainer once as a
dry run. A bad value is one ConfigError line that names the key and says what is allowed;
nothing has been written when it is raised."""

import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from compressor import choices, runtimes
from compressor.data.rules import DATASET, dataset  # noqa: F401 - the dataset's rules, checked with the rest
from compressor.errors import ConfigError
from compressor.search import space as search_space
from compressor.settings import apply, boolean, choice, fractions, integer, number, strings, text
from compressor.techniques import base as stage_protocol
from compressor.training.flags import torch_flags_kept

# -- the rule tables ------------------------------------------------------------------------
TOP = {
    "seed": integer(0, 2**32 - 1),
    "rerun": boolean(),
    "size_budget_mb": number(gt=0, optional=True),
    "train.epochs": integer(1),
    "train.optimizer": choice(choices.OPTIMIZERS),
    "train.lr": number(gt=0),
    "train.weight_decay": number(ge=0),
    "train.momentum": number(ge=0, le=1),
    "train.scheduler": choice(choices.SCHEDULERS),
    "train.patience": integer(1, optional=True),
    "train.channels_last": boolean(),
    "latency.threads": integer(1),
    "latency.reps": integer(1),
    "latency.rounds": integer(1),
    "ddp.timeout_s": number(gt=0),
    "budget.max_drop": number(ge=0, optional=True),
    "budget.confidence": number(gt=0, lt=1, optional=True),
    "budget.grid": fractions(),
    "budget.probe_epochs": integer(0, optional=True),
    **{f"export.{key}": boolean() for key in runtimes.keys().values()},
    "export.runtimes": strings(),  # runtimes of your own, by module path (compressor/runtimes/__init__.py)
    "export.test": boolean(),
    "trust.checkpoint": boolean(),
    "trust.targets": strings(),
    "model.name": text(),
    "model.checkpoint": text(optional=True),
    "teacher.name": text(),
    "teacher.checkpoint": text(optional=True),
}


SET_ELSEWHERE = {
    "max_epochs": "train.epochs (the baseline or teacher) or technique.epochs (a stage)",
    "callbacks": "the technique config",
    "logger": "the logger group",
}


def trainer(cfg: DictConfig) -> None:
    """Build the Trainer once as a dry run: a bad accelerator, device count, precision or
    strategy fails here, before any training."""
    from hydra.utils import instantiate

    try:
        with torch_flags_kept():
            instantiate(cfg.trainer, max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[])
    except Exception as exc:  # Lightning raises several kinds for a bad argument
        cause = exc.__cause__ or exc
        detail = " ".join(str(cause).split()) or type(cause).__name__
        raise ConfigError(f"trainer: {detail[:400]}") from None


def writable(path: Path) -> str | None:
    """Why `path` cannot be created and written, or None. The test leaves nothing behind."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        probe = tempfile.mkdtemp(dir=existing, prefix=".compressor-write-test-")
        shutil.rmtree(probe)
    except OSError as exc:
        return f"{existing} cannot be written ({exc.strerror or type(exc).__name__})"
    return None


def check_paths(cfg: DictConfig) -> None:
    for key in ("run_dir", "cache_dir", "index_dir"):
        value = cfg.paths.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"paths.{key}={value!r}: must be a folder path")
        reason = writable(Path(value))
        if reason:
            raise ConfigError(f"paths.{key}={value}: {reason}")


def check_file(path, key: str, accepted: str) -> None:
    """A file input exists and is not empty (what it holds is checked when it is loaded)."""
    p = Path(str(path))
    if not p.is_file():
        raise ConfigError(f"{key}: {p}: no such file; give {accepted}")
    if p.stat().st_size == 0:
        raise ConfigError(f"{key}: {p}: the file is empty; give {accepted}")


CHECKPOINTS = "a model.safetensors artifact, a Lightning .ckpt, or a state dict (.pt/.pth/.safetensors)"


def values(cfg: DictConfig) -> None:
    apply(cfg, TOP)
    dataset(cfg.dataset)
    for net in ("model", "teacher"):
        if not isinstance(cfg[net].get("net"), DictConfig) or "_target_" not in cfg[net].net:
            raise ConfigError(f"{net}.net: must be a config with a _target_ that builds the nn.Module")
    stage_protocol.validate(cfg.technique)  # each stage's own rules (compressor/techniques)
    for name in cfg.export.get("runtimes") or []:  # a runtime of your own: a module that keeps the contract
        try:
            runtimes.get(name)
        except ConfigError as exc:
            raise ConfigError(f"export.runtimes: {exc}") from None
    if cfg.get("search") is not None:  # search=default (compressor/search/frontier.py)
        search_space.check(cfg)
    for key in ("max_epochs", "callbacks", "logger"):
        if cfg.trainer.get(key) is not None:
            raise ConfigError(
                f"trainer.{key}={cfg.trainer.get(key)}: compressor sets it for each fit; use " + SET_ELSEWHERE[key]
            )
    check_paths(cfg)
    for key in ("model.checkpoint", "teacher.checkpoint"):
        if OmegaConf.select(cfg, key) is not None:
            check_file(OmegaConf.select(cfg, key), key, CHECKPOINTS)
