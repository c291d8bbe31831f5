"""The stage protocol: what every technique implements, and what the job, the budget and the
validation know of one. Nothing above this module branches on a technique's name.

A stage's config (conf/technique/<name>.yaml, or a user's own) names its class with `_target_`, the
project's only registry, and gives its knobs. Its class declares:
- `settings`: its settings class (a dataclass in its folder's settings.py: each key's default,
  rule and meaning, compressor.settings), and `joined` for the rules that join two keys: the one
  place each lives, run before torch is imported (so the class's module imports torch only inside
  its methods);
- `check(model, teacher)`: the architecture can take this recipe (layer names, taps);
- `apply(model, context) -> (model, record)`: the technique itself, with its own fine-tune or
  calibration; the budget and the search call the same `apply` on a copy;
- `searchable()` and `search(budget, model, floor)`: whether an accuracy budget may vary its
  recipe, and the search that sets it (the recipe goes into `overrides`);
- `label(cfg)`, `precision()`: the run's name in reports, and the number format it leaves;
- `trainer_args()`: what its fit must change in the job's Trainer (QAT trains in fp32);
- `dimension`, `columns`, `in_table`, `summarize`: its axis of search=default's space, and its part
  of the report: search/space.py and report/build.py name no technique, they read these.

A stage that fine-tunes through a Lightning callback (prune, quant, cluster) subclasses
`CallbackStage` and names the callback's class: the stage builds it from its own validated
config (every setting but the fit's), so a setting is declared once, in its settings class."""

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques.dimension import Dimension
from compressor.techniques.shared import FIT


@dataclass
class Context:
    """What a stage may use: the job's config, data, reference model (the trained baseline, or the
    teacher), where it writes, the input shape, and how its fit runs (a budget probe: fewer
    epochs, no logs, no checkpoints)."""

    cfg: Any
    dm: Any
    reference: Any
    run_dir: Path
    shape: list
    checkpoint_dir: Path | None = None
    epochs: int | None = None  # None: the stage's own `epochs`
    name: str | None = None  # the fit's name in logs (None: the stage's kind)
    log: bool = True
    float_model: Any = field(default=None)  # set by a stage whose output is not float (the exports start from it)
    goal: Any = None  # with a budget: (the loader its search decides on, this stage's floor) for its recovery


class Stage:
    """One technique applied to a model. Subclasses set `settings` and implement `apply`."""

    settings: type | None = None  # its settings class (a dataclass); None: no settings
    joined = None  # check(values, prefix): its rules that join keys (a settings.py function), or None
    uses_teacher = False  # True: the job's reference is the teacher and the model starts as the student
    trains = True  # False: the stage measures, never fits (its `epochs` and `lr` are not required)
    dimension: Dimension | None = None  # its axis of search=default's space; None: not searched
    columns: dict = {}  # its report columns: {key: (results.json block, metric, title)}
    in_table = True  # False: its runs are no rows of the report (a scan compresses nothing)

    def __init__(self, prefix: str, node: DictConfig):
        self.prefix, self.node = prefix, node
        self.overrides: dict = {}  # the recipe a budget search chose (per-layer amounts, layers kept float)

    @property
    def kind(self) -> str:
        return self.node.kind

    # -- config: before torch --------------------------------------------------------------
    @classmethod
    def validate(cls, prefix: str, node: DictConfig) -> None:
        """Every key's rule, then the rules that join keys (`joined`, on the config over the
        defaults; subclasses may extend)."""
        if cls.settings is None:
            return
        s.check(cls.settings, node, prefix, required=("epochs", "lr") if cls.trains else ())
        span, epochs = node.get("schedule_epochs"), node.get("epochs")
        if span is not None and isinstance(epochs, int) and epochs > span:
            raise ConfigError(
                f"{prefix}schedule_epochs={span} < {prefix}epochs={epochs}: the schedule must span "
                f"the fit (null: the fit's own epochs)"
            )
        if cls.joined is not None:
            given = {f.name: s.value(node, f.name) for f in fields(cls.settings) if f.name in node}
            cls.joined({**s.defaults(cls.settings), **given}, prefix)

    def label(self, cfg) -> str:
        return self.kind

    def knobs(self) -> dict:
        """Its scalar settings, for TensorBoard's hparams (full keys, so a pipeline's stages differ)."""
        if self.settings is None:
            return {}
        return {
            f"{self.prefix}{k}": self.node[k]
            for k in (f.name for f in fields(self.settings))
            if k in self.node and isinstance(self.node[k], (bool, int, float, str))
        }

    # -- the model -------------------------------------------------------------------------
    def check(self, model, teacher=None) -> None:
        """Fail before any training when `model` cannot take this recipe."""

    def fine_tunes(self) -> bool:
        """Whether `apply` trains (a post-training quantization or a scan does not)."""
        return self.trains

    def epochs(self, ctx: Context) -> int:
        """The epochs `apply` trains for: the stage's own, or fewer for a budget probe."""
        own = self.node.get("epochs", 0) if self.fine_tunes() else 0
        return own if ctx.epochs is None else min(ctx.epochs, own)

    def apply(self, model, ctx: Context):
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def report(self, logits, reference_logits, reference_metrics: dict) -> dict:
        """What this stage adds to results.json once the run is measured (`logits`: the run's model on
        the test set; the reference's likewise); nothing by default."""
        return {}

    @classmethod
    def summarize(cls, runs: list[dict], out: Path) -> str:
        """Markdown the report appends to summary.md from this technique's runs (their results.json,
        each with `_path`), writing any file it links into `out`; nothing by default."""
        return ""

    def precision(self) -> str | None:
        """The number format this stage leaves the model in (None: unchanged)."""
        return None

    def trainer_args(self) -> dict:
        """Trainer arguments its fit overrides (e.g. `precision`); none by default."""
        return {}

    # -- what a budget may vary ----------------------------------------------------------------
    def searchable(self) -> bool:
        return False

    def search(self, budget, model, floor: float) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no budget search")


def fit_args(stage: Stage, ctx: Context) -> dict:
    """How the stage's fit runs: resumable from its checkpoints, logged, or as a quiet probe."""
    return dict(
        checkpoint_dir=ctx.checkpoint_dir,
        log_to=ctx.log,
        knob=f"{stage.prefix}lr={stage.node.get('lr')}",
        trainer_args=stage.trainer_args(),
    )


class CallbackStage(Stage):
    """A technique done by a Lightning callback on a fine-tune fit of the model (prune, quant,
    cluster): `callback_class` names it, the stage's config gives its settings (all but the
    fit's), `overrides` (a budget's recipe) replace them, and `recover` chooses what the fit trains
    against."""

    recovers = True  # a fine-tune against the model as it was before (recover=kd)
    callback_class = ""  # the callback's import path (imported when built: the class may need torch)

    @classmethod
    def validate(cls, prefix: str, node: DictConfig) -> None:
        super().validate(prefix, node)
        if not cls.recovers:
            return
        if node.get("recover", "none") == "kd":
            cls.may_recover(prefix, node)
            s.check_terms(s.value(node, "recover_weights"), node.recover_temperature, f"{prefix}recover_weights")

    @classmethod
    def may_recover(cls, prefix: str, node: DictConfig) -> None:
        """Raise when this recipe has no fine-tune to recover in."""

    def callback(self, shape, cfg=None, run_dir=None):
        """The callback, from this stage's settings but the fit's, plus what the run knows that the
        callback `needs`: the input shape, the seed, the run folder (a callback writing files writes there)."""
        from hydra.utils import get_class

        cls = get_class(self.callback_class)
        keys = [f.name for f in fields(self.settings) if f.name not in FIT]
        given = {k: s.value(self.node, k) for k in keys if k in self.node}
        run = {
            "example_shape": list(shape),
            "seed": None if cfg is None else cfg.seed,
            "workdir": None if run_dir is None else str(run_dir),
        }
        given.update({k: v for k, v in run.items() if k in getattr(cls, "needs", ()) and v is not None})
        return cls(**{**given, **self.overrides})

    def check(self, model, teacher=None) -> None:
        self.callback([1, 1, 1, 1]).check(model)

    def before(self, model, ctx: Context) -> None:
        """Called with the stage's input, before its fit."""

    def after(self, model, record: dict) -> None:
        """Called with the stage's output and record, after its fit."""

    def apply(self, model, ctx: Context):
        from compressor.data.base import example_input
        from compressor.modules import recover
        from compressor.training.fit import fit, optim_args
        from compressor.training.recovery import Recovery

        callback = self.callback(ctx.shape, ctx.cfg, ctx.run_dir)
        loader, floor = ctx.goal or (None, None)
        stops = Recovery(callback, loader, floor, self.node.get("patience"), self.node.get("stop_within", False))
        self.before(model, ctx)
        pair = example_input(ctx.shape[1], ctx.shape[-1], 2)  # no draw from the seeded RNG
        optim = optim_args(ctx.cfg, self.node.get("lr"), self.node.get("schedule_epochs"))
        module = recover.module(self.node, model, ctx.dm.num_classes, pair, optim)
        data = recover.data(module, ctx.dm, ctx.checkpoint_dir, self.epochs(ctx))
        record = fit(
            ctx.cfg,
            module,
            data,
            ctx.run_dir,
            ctx.name or self.kind,
            self.epochs(ctx),
            [stops, callback],  # its on_fit_end restores a best epoch before the technique's makes it final
            **fit_args(self, ctx),
        )
        record.update(callback.summary(), recover=self.node.get("recover", "none"), **stops.summary())
        if data is not ctx.dm:
            record["teacher_once"] = True
        out = callback.compressed if callback.compressed is not None else module.model  # TechniqueCallback
        self.after(out, record)
        return out, record


def stage_class(prefix: str, node) -> type:
    """The class a stage config names with `_target_`; one line when it names none or no Stage."""
    from hydra.utils import get_class

    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str) or not target:
        raise ConfigError(
            f"{prefix}_target_ is not set: a stage config names its class, e.g. "
            "compressor.techniques.prune.stage.Prune (a subclass of compressor.techniques.base.Stage)"
        )
    try:
        cls = get_class(target)
    except Exception as exc:  # hydra raises ImportError or ValueError
        raise ConfigError(
            f"{prefix}_target_={target}: cannot be imported ({' '.join(str(exc).split())[:200]})"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise ConfigError(f"{prefix}_target_={target}: not a subclass of compressor.techniques.base.Stage")
    if not isinstance(node.get("kind"), str) or not node.kind:
        raise ConfigError(f"{prefix}kind is not set: a stage's short name, used in labels and results (e.g. prune)")
    return cls


def sections(technique: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key prefix, stage config) of each stage: one stage (its own keys), a pipeline's `order`,
    or none (the baseline)."""
    if "order" in technique:
        names = [k for k, v in technique.items() if isinstance(v, DictConfig)]
        if not isinstance(technique.order, ListConfig) or not technique.order:
            raise ConfigError(f"technique.order={technique.order}: must be a non-empty list of sections: {names}")
        missing = [s for s in technique.order if s not in technique]
        if missing:
            raise ConfigError(f"technique.order names {missing}, not sections of technique; sections: {names}")
        return [(f"technique.{s}.", technique[s]) for s in technique.order]
    baseline = "_target_" not in technique and technique.get("kind", "baseline") == "baseline"
    return [] if baseline else [("technique.", technique)]


def validate(technique: DictConfig) -> None:
    for prefix, node in sections(technique):
        stage_class(prefix, node).validate(prefix, node)


def build(technique: DictConfig) -> list[Stage]:
    """The job's plan: one Stage per section, in order (configs already validated)."""
    return [stage_class(prefix, node)(prefix, node) for prefix, node in sections(technique)]


def copy_of(stage: Stage) -> Stage:
    """The same stage with its own overrides (a budget probe sets a candidate recipe on a copy)."""
    out = copy.copy(stage)
    out.overrides = dict(stage.overrides)
    return out
