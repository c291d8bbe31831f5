"""Every key a job reads is checked here, before any data is loaded or any model is trained.

`values` checks the top-level keys, train, latency, dataset, export, trust, every key of every
technique stage and every output folder. It imports nothing heavy, so a bad value is refused
in about a second, before torch and Lightning load. `trainer` then builds the Trainer once as a
dry run. A bad value is one ConfigError line that names the key and says what is allowed;
nothing has been written when it is raised."""
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from compressor import choices
from compressor.errors import ConfigError


# -- rules: (test, what is allowed) ---------------------------------------------------------
def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo=None, hi=None, optional=False):
    text = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
    return (lambda v: (optional and v is None) or (_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)),
            text + (" (or null)" if optional else ""))


def number(gt=None, ge=None, lt=None, le=None, optional=False):
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]

    def ok(v):
        if optional and v is None:
            return True
        return _num(v) and (gt is None or v > gt) and (ge is None or v >= ge) and (lt is None or v < lt) \
            and (le is None or v <= le)
    return ok, " ".join(["a number", " and ".join(bounds)]).strip() + (" (or null)" if optional else "")


def boolean():
    return (lambda v: isinstance(v, bool)), "true or false"


def text(optional=False):
    return (lambda v: (optional and v is None) or (isinstance(v, str) and v != "")), \
        "a non-empty string" + (" (or null)" if optional else "")


def choice(options):
    options = list(options)
    return (lambda v: v in options), "one of " + ", ".join(map(str, options))


def subset(options):
    options = list(options)
    return (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(x in options for x in v)), \
        "a non-empty list of " + ", ".join(options)


def strings():
    return (lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)), "a list of strings"


def numbers(positive=False):
    return (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(x) and (not positive or x > 0) for x in v),
            "a non-empty list of " + ("positive " if positive else "") + "numbers")


def fractions():
    return (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(a) and 0 < a < 1 for a in v),
            "a non-empty list of amounts in (0, 1)")


def amounts():
    return (lambda v: v is None or (isinstance(v, dict) and len(v) > 0 and all(
        _num(a) and 0 <= a < 1 for a in v.values())),
        "null or a mapping {layer name: amount in [0, 1)}")


_ABSENT, _MISSING = object(), object()


def _value(node, key, name=None):
    """The value at a dotted key as plain Python; _ABSENT when there is no such key, _MISSING for `???`.
    `name` is the key's full name for the error an unresolvable interpolation gives."""
    try:
        value = OmegaConf.select(node, key, default=_ABSENT, throw_on_missing=True)
    except MissingMandatoryValue:
        return _MISSING
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{name or key}: {' '.join(str(exc).split())[:300]}") from None
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def apply(node, rules: dict, prefix: str = "", required=()) -> None:
    for key, (ok, allowed) in rules.items():
        value = _value(node, key, f"{prefix}{key}")
        if value is _ABSENT and key not in required:
            continue
        if value is _ABSENT or value is _MISSING:
            raise ConfigError(f"{prefix}{key} is not set: must be {allowed}")
        if not ok(value):
            raise ConfigError(f"{prefix}{key}={value!r}: must be {allowed}")


# -- the rule tables ------------------------------------------------------------------------
TOP = {
    "seed": integer(0, 2**32 - 1), "rerun": boolean(), "size_budget_mb": number(gt=0, optional=True),
    "train.epochs": integer(1), "train.optimizer": choice(choices.OPTIMIZERS), "train.lr": number(gt=0),
    "train.weight_decay": number(ge=0), "train.momentum": number(ge=0, le=1),
    "train.scheduler": choice(choices.SCHEDULERS),
    "latency.threads": integer(1), "latency.reps": integer(1), "latency.rounds": integer(1),
    "budget.max_drop": number(ge=0, optional=True), "budget.grid": fractions(), "budget.probe_epochs": integer(0, optional=True),
    "export.onnx": boolean(), "export.openvino": boolean(), "trust.checkpoint": boolean(), "trust.targets": strings(),
    "model.name": text(), "model.checkpoint": text(optional=True),
    "teacher.name": text(), "teacher.checkpoint": text(optional=True),
}


DATASET = {
    "name": text(), "in_channels": integer(1), "image_size": integer(1), "num_classes": integer(2),
    "mean": numbers(), "std": numbers(positive=True), "batch_size": integer(1), "num_workers": integer(0),
    "val_fraction": number(gt=0, lt=1), "test_fraction": number(gt=0, lt=1), "seed": integer(0, 2**32 - 1),
    "train_size": integer(1, optional=True), "data_dir": text(optional=True), "extract_dir": text(), "download": boolean(), "skip_bad_images": boolean(), "datamodule._target_": text(),
}


STAGE = {"epochs": integer(0), "lr": number(gt=0)}
RECOVER = {"recover": choice(choices.RECOVERY), "recover_temperature": number(gt=0),
           "recover_weights": (lambda v: isinstance(v, dict), "a mapping of loss term to weight")}
KINDS = {
    "prune": {"amount": number(ge=0, lt=1), "method": choice(choices.PRUNE_METHODS),
              "scope": choice(choices.PRUNE_SCOPES), "schedule": choice(choices.PRUNE_SCHEDULES),
              "ramp_epochs": integer(0, optional=True), "include": strings(), "exclude": strings(),
              "amounts": amounts(), "importance": choice(choices.PRUNE_IMPORTANCES), "steps": integer(1),
              "regularize_epochs": integer(0), "reg": number(ge=0)},
    "quant": {"mode": choice(choices.QUANT_MODES), "backend": choice(choices.QUANT_BACKENDS),
              "calibration_batches": integer(1), "keep_float": strings()},
    "cluster": {"bits": integer(1, 8), "include": strings(), "exclude": strings()},
    "kd": {"temperature": number(gt=0), "dkd_alpha": number(ge=0), "dkd_beta": number(ge=0)},
    "sensitivity": {"grid": fractions(), "methods": subset(choices.SCAN_METHODS), "quant": boolean(), "calibration_batches": integer(1),
                    "include": strings(), "exclude": strings()},
}


# -- the checks -----------------------------------------------------------------------------
def stages(technique: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key prefix, stage config) of each stage: one stage (its own keys) or a pipeline's `order`."""
    if "order" in technique:
        sections = [k for k in technique if k not in ("name", "order")]
        if not isinstance(technique.order, ListConfig) or not technique.order:
            raise ConfigError(f"technique.order={technique.order}: must be a non-empty list of sections: {sections}")
        missing = [s for s in technique.order if s not in technique]
        if missing:
            raise ConfigError(f"technique.order names {missing}, not sections of technique; sections: {sections}")
        return [(f"technique.{s}.", technique[s]) for s in technique.order]
    kind = technique.get("kind", "baseline")
    return [] if kind == "baseline" else [("technique.", technique)]


def budgeted(stage: DictConfig) -> bool:
    """Whether the accuracy budget searches this stage: pruning by L1 or channels with no per-layer
    amounts given, static int8 on torch with no layers kept float by hand, or on openvino (NNCF's
    accuracy control)."""
    if stage.get("kind") == "prune":
        return stage.method in ("l1_unstructured", "channel") and not stage.get("amounts")
    if stage.get("kind") == "quant":
        return stage.mode == "static" and stage.backend in ("torch", "openvino") and not stage.get("keep_float")
    return False


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


def check_stage(prefix: str, stage: DictConfig) -> None:
    kind = stage.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{prefix}kind={kind!r}: choose one of {', '.join(KINDS)}")
    apply(stage, {**STAGE, **KINDS[kind]}, prefix, required=tuple(STAGE) if kind != "sensitivity" else ())
    if kind in ("prune", "quant", "cluster"):
        apply(stage, RECOVER, prefix)
        if stage.get("recover", "none") == "kd":
            if kind == "quant" and stage.mode != "qat":
                raise ConfigError(f"{prefix}recover=kd with {prefix}mode={stage.mode}: only stages that fine-tune "
                                  "recover; choose mode=qat, or recover=none")
            check_terms(_value(stage, "recover_weights"), stage.recover_temperature, f"{prefix}recover_weights")
    if kind == "prune" and stage.method == "channel":
        need = stage.get("steps", 1) + stage.get("regularize_epochs", 0)
        if need > 1 and stage.epochs < need:
            raise ConfigError(f"{prefix}steps={stage.steps} after {prefix}regularize_epochs={stage.regularize_epochs}: "
                              f"needs {prefix}epochs >= {need} (one epoch per step)")
    if kind == "kd":
        presets = list(stage.get("presets", {}))
        if "weights" not in stage or stage.loss not in presets:  # `weights` interpolates the preset
            raise ConfigError(f"{prefix}loss={stage.get('loss')!r}: choose one of {', '.join(presets)} "
                              f"(or set {prefix}weights={{term: weight}})")
        apply(stage, {"weights": (lambda v: isinstance(v, dict), "a mapping of loss term to weight")}, prefix)
        check_terms(_value(stage, "weights"), stage.temperature, f"{prefix}weights")


@contextmanager
def torch_flags_kept():
    """Building a Lightning Trainer sets torch's global deterministic-algorithms flag
    (`trainer.deterministic`); this keeps it to the block, so int8 kernels measured afterwards
    do not warn hundreds of times that they have no deterministic twin."""
    import torch

    state = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(state[0], warn_only=state[1])


SET_ELSEWHERE = {"max_epochs": "train.epochs (the baseline or teacher) or technique.epochs (a stage)",
                 "callbacks": "the technique config", "logger": "the logger group"}


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
    apply(cfg.dataset, DATASET, "dataset.", required=("in_channels", "image_size", "num_classes"))
    d = cfg.dataset
    if "val_fraction" in d and "test_fraction" in d and d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(f"dataset.val_fraction + dataset.test_fraction = {d.val_fraction + d.test_fraction}: must be < 1")
    for key in ("mean", "std"):
        if key in d and len(d[key]) not in (1, d.in_channels):
            raise ConfigError(f"dataset.{key} has {len(d[key])} values: give 1 or dataset.in_channels={d.in_channels}")
    for net in ("model", "teacher"):
        if not isinstance(cfg[net].get("net"), DictConfig) or "_target_" not in cfg[net].net:
            raise ConfigError(f"{net}.net: must be a config with a _target_ that builds the nn.Module")
    for prefix, stage in stages(cfg.technique):
        check_stage(prefix, stage)
    for key in ("max_epochs", "callbacks", "logger"):
        if cfg.trainer.get(key) is not None:
            raise ConfigError(f"trainer.{key}={cfg.trainer.get(key)}: compressor sets it for each fit; use "
                              + SET_ELSEWHERE[key])
    check_paths(cfg)
    for key in ("model.checkpoint", "teacher.checkpoint"):
        if OmegaConf.select(cfg, key) is not None:
            check_file(OmegaConf.select(cfg, key), key, CHECKPOINTS)
