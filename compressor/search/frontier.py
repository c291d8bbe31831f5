"""search=default: which file to ship, across distillation, pruning, quantization and runtimes.

1. The baseline trial: the model as trained (cached), its files on every runtime (the reference).
2. First rung: `search.max_trials` points of the space (compressor/search/space.py): each lower precision
   alone first, then Optuna's NSGA-II (multi-objective: validation accuracy and the objective's gain),
   each a pipeline job with a fraction of each stage's epochs (`search.rung_fraction`).
3. Second rung: the `search.promote` first-rung trials with the largest gain within
   budget.max_drop + search.margin get their full recipe (each stage's own epochs, or
   `search.full_epochs`: a student, trained from scratch, needs more than a fine-tune), except
   those that cannot win: more epochs change a file's accuracy, not its speed or size, so a trial
   whose files all fall under ties.CLOSE of the best finished file within the budget is left out.
4. Every file of every full-recipe trial is a candidate, scored by its own validation accuracy on
   the selection half (compressor/certify.py); compressor/search/decide.py decides. The frontier is
   the candidates no other dominates;
   with budget.confidence its files within the budget are certified in order on the other half,
   and the fastest certified one ships (a tie within timing noise goes to the smaller file:
   compressor/search/ties.py). Trials score their exported files on validation alone
   (export.test=false); the frontier's files and the chosen one are then run on the test set. The
   one other reading of it: each trial's results.json scores the trial's own torch model on test,
   as every job's does (its schema needs test/acc); no choice reads that figure.

Every gain a decision reads (what NSGA-II is told, what is promoted, the frontier, ties) is the
latency table's (compressor/search/latency.py): each file's speed-up over the baseline's file,
measured once per machine under a fixed protocol and kept in the cache, so the same search takes the
same decisions on every run, whatever the load. A trial's own timing stays in its record.

A fine-tuning stage's fit is shared by every trial whose pipeline starts the same way, and a promoted
trial continues its first rung's fit (compressor/prefixes.py): each trial's record says which epochs
it trained and which it reused, and search.json the minutes per phase. Each trial is a job: it reuses
the cached baseline and teacher, a finished trial is found in the job index and not rerun, so a
killed search continues where it stopped. `search.parallel` trials run at once
(compressor/search/launch.py: joblib, or submitit under hydra/launcher=slurm).
Written to the run folder: trials.jsonl (a line per trial as it ends), frontier.csv, summary.md,
frontier.png, search.json, TensorBoard scalars, and ship/ with the chosen file."""

import json
import logging
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from compressor import certify, results
from compressor.config import CONF, compose
from compressor.errors import brief
from compressor.search import latency, launch, space
from compressor.search.decide import decide
from compressor.search.outputs import Phases, epochs_spent, spent, tensorboard, write
from compressor.search.records import candidates, trained, validation_only
from compressor.search.rungs import first_rung, second_rung

log = logging.getLogger("compressor")
GAIN = {"latency_b1": "speedup_b1", "latency_b64": "speedup_b64", "size": "smaller"}
OWN = ("search", "budget.", "technique", "export", "model", "teacher", "hydra.")  # what a trial sets itself


def origin() -> tuple[str, list[str]]:
    """The model the search compresses (its config's name) and the user's other overrides, read
    before the first trial composes its own config over Hydra's."""
    hydra = HydraConfig.get()
    base = [o for o in hydra.overrides.task if not o.lstrip("+~").startswith(OWN)]
    return hydra.runtime.choices.get("model") or hydra.runtime.choices.get("teacher"), base


class Trials:
    """Runs points as jobs (compressor/search/launch.py: here, or several at once) and keeps what
    each produced."""

    def __init__(
        self,
        cfg,
        model: str,
        base: list[str],
        out: Path,
        launcher: dict | None = None,
        full: dict | None = None,
        timer=None,
    ):
        self.cfg, self.model, self.base, self.out, self.launcher = cfg, model, base, out, launcher
        self.full = full  # each fine-tuning stage's full epochs: every trial's schedule spans them
        self.done: dict = {}  # (rung, point) -> record
        self.log = out / "trials.jsonl"
        self.reference = None  # the baseline's file, once its trial ran: the latency table's reference
        self.timer = timer or latency.timed  # the latency table's, for files it has no figure of yet

    def run(self, point: dict, epochs: dict, rung: str) -> dict:
        return self.run_many([point], epochs, rung)[0]

    def run_many(self, points: list[dict], epochs, rung: str) -> list[dict]:
        """Each point's record; the new ones run search.parallel at a time. `epochs`: a dict for
        every point, or a function of the point."""
        todo = {}  # key -> (record, job)
        for point in points:
            key = (rung, tuple(sorted(point.items())))
            if key in self.done or key in todo:
                continue
            name = (
                f"{rung}_{len(self.done) + len(todo):03d}_"
                + "".join(c if c.isalnum() else "_" for c in space.label(point, self.cfg.search))[:60]
            )
            recipe = epochs(point) if callable(epochs) else epochs
            overrides = [
                *self.base,
                *space.overrides(point, self.cfg.search, self.model, self.cfg.search.runtime, recipe, self.full),
            ]
            record = {
                "rung": rung,
                "point": point,
                "label": space.label(point, self.cfg.search),
                "overrides": overrides,
            }
            try:
                job = compose(overrides, self.cfg.paths.root, name)
            except Exception as exc:  # a point whose overrides do not compose (a user's student config)
                job = ("error", brief(exc, 500))
            else:
                with open_dict(job):
                    job.paths.run_dir = str(self.out / "trials" / name)
                    job.paths.cache_dir, job.paths.index_dir = self.cfg.paths.cache_dir, self.cfg.paths.index_dir
            todo[key] = (record, job)
        runnable = [job for _, job in todo.values() if not isinstance(job, tuple)]
        ran = iter(launch.run(runnable, self.cfg.search.parallel, self.launcher, self.out))
        outcomes = [job if isinstance(job, tuple) else next(ran) for _, job in todo.values()]
        for (key, (record, _)), (status, value) in zip(todo.items(), outcomes):
            if status == "ok":
                reused = bool(value["run"].get("reused_from"))
                record.update(
                    run_dir=value["run"]["run_dir"],
                    reused=reused,
                    stages=trained(value, reused),
                    candidates=candidates(
                        value, self.cfg.search.runtime, self.cfg.budget.get("confidence") is not None
                    ),
                    baseline=value["baseline"],
                )
                if self.reference is not None:  # decisions read the latency table, not the trial's own timing
                    latency.tabled(
                        record["candidates"],
                        self.reference,
                        GAIN[self.cfg.search.objective],
                        self.cfg.latency.threads,
                        self.cfg.paths.cache_dir,
                        self.timer,
                    )
            else:  # one point the model cannot take (or that diverged) does not end the search
                log.warning("search: trial %s failed (%s)", record["label"], value)
                record.update(error=value, candidates=[])
            self.done[key] = record
            with self.log.open("a") as f:  # validation only: the test figures are read for the frontier alone
                f.write(json.dumps(validation_only(record)) + "\n")
        return [self.done[(rung, tuple(sorted(p.items())))] for p in points]


def refuse_invalid(trials: Trials, dims: dict, epochs: dict) -> None:
    """Each choice of each dimension, as the job it makes, composed and checked (validate.values,
    before torch) now: a point that is not a valid config is one line before any trial runs, not a
    failed trial later."""
    from compressor import validate
    from compressor.errors import ConfigError

    for key, values in dims.items():
        for value in values:
            search = trials.cfg.search
            point = {**space.nothing(search), key: value}
            args = [*trials.base, *space.overrides(point, search, trials.model, search.runtime, epochs, trials.full)]
            try:
                validate.values(compose(args, trials.cfg.paths.root, "refuse_invalid"))
            except ConfigError as exc:
                raise ConfigError(
                    f"search: the point {space.label(point, search)} ({key}={value}) is not a valid job: {exc}"
                ) from None
            except Exception as exc:  # noqa: BLE001 - Hydra's composition errors, one line each
                raise ConfigError(
                    f"search: the point {space.label(point, search)} ({key}={value}) does not compose: {brief(exc, 300)}"
                ) from None


def baseline_file(reference: dict) -> dict:
    """The baseline trial's own torch file: what the latency table measures every file against."""
    own = Path(reference["run_dir"]) / "model.safetensors"
    return {"runtime": "torch", "path": str(own), "static_shape": False, "recipe": "baseline"}


def main(cfg) -> dict:
    model, base = origin()
    launcher = launch.settings()
    s, max_drop = cfg.search, float(cfg.budget.max_drop)
    gain = GAIN[s.objective]
    out = Path(cfg.paths.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    deadline = time.monotonic() + 60 * s.time_budget_min if s.time_budget_min else float("inf")
    dims = space.dimensions(s, model, CONF)
    full = space.full_epochs(s, CONF)
    short = space.rung_epochs(s, full)
    trials = Trials(cfg, model, base, out, launcher, full)
    refuse_invalid(trials, dims, short)
    clock = Phases()
    reference = trials.run({"student": "none", "prune": "none", "precision": "fp32"}, full, "baseline")
    if "error" in reference:
        raise RuntimeError(f"search: the baseline trial failed: {reference['error']}")
    trials.reference = baseline_file(reference)
    writer = tensorboard(cfg, out)
    clock.end("baseline")
    first = first_rung(
        trials,
        dims,
        s,
        gain,
        max_drop,
        deadline,
        epochs=lambda p: short if space.fine_tunes(p, s) else full,
        seed=cfg.seed,
        writer=writer,
    )
    clock.end("first rung")
    finals, outclassed = second_rung(trials, first, s, gain, max_drop, deadline, full)
    clock.end("second rung")
    rows = [{"recipe": r["label"], "rung": r["rung"], **c} for r in finals for c in r["candidates"]]
    result = decide(rows, gain, max_drop, reference, s, cfg.latency.threads, confidence=cfg.budget.get("confidence"))
    clock.end("deciding (timing the close files)")
    answers = result.pop("test_answers")  # the frontier's files on the test set, image by image
    results.write(
        out / "correct.json",
        {
            "images": {"test": len(next(iter(answers.values())))} if answers else {},
            "files": {k: {"test": certify.pack(v)} for k, v in answers.items()},
        },
    )
    result.update(minutes=clock.minutes, epochs=epochs_spent(trials.done.values()), outclassed=outclassed)
    result["verdict"] += " " + spent(result)
    write(out, result, rows, gain, s, writer)
    print(result["verdict"])
    return result
