"""Stage fits shared between jobs (issue 43: the search in a third of the time).

A fine-tuning stage checkpoints into a folder named by what its fit is: the job's config with the
technique cut after this stage and the stage's `epochs` left out (the length of its learning-rate
schedule kept), plus the data's fingerprint. Any job whose pipeline starts the same way finds it:

- the search's trials that distil into the same student (or distil and prune alike) train that
  prefix once; the others resume from its last checkpoint with nothing left to train;
- a promoted trial continues its first rung's fit: the first rung stops after a fraction of the
  epochs on the full schedule (`schedule_epochs`), so the promotion resumes it for the rest and
  ends where a full fit from scratch ends (weights, optimizer, schedule and random state are in
  the checkpoint: compressor/training/resume.py);
- a job killed mid-pipeline and run again resumes every stage it had finished or begun.

A lock per folder lets one job train it while the others wait, then read the finished fit. A fit
that already ran more epochs than a job asks for is not cut short: that job trains in a folder of
its own (its epochs in the name). Stages that do not fine-tune, runs under an accuracy budget (a
stage's recipe is searched there) and DDP runs keep the job's own folder, as before: DDP is read
from the trainer's config, which every rank holds alike (issue 54: ranks that read WORLD_SIZE
disagreed, and one waited on the lock while the other waited for it in the fit).

The folders live under paths.index_dir/stages/ and may be deleted at any time: a job then trains
its stages again."""

from contextlib import contextmanager
from pathlib import Path

from compressor import baseline
from compressor.storage import cache
from compressor.training import ddp, resume

# what only measures, exports, names or writes a run: the same fit under any of these
NOT_THE_FIT = ("export", "latency", "logger", "search", "budget", "hydra", "trust")


def key(cfg, data: dict, stages: list[dict], i: int) -> str:
    """The identity of stage `i`'s fit: the config up to that stage, without its `epochs`."""
    spec = baseline.spec_of(cfg, leave_out=NOT_THE_FIT, data=data)
    last = dict(stages[i])
    epochs = last.pop("epochs", None)
    last["schedule_epochs"] = last.get("schedule_epochs") or epochs
    spec["technique"] = [baseline.unset_stage_added(s) for s in [*stages[:i], last]]
    return baseline.hashed(cfg, spec, data)


def shared(cfg, stage, budget_active: bool) -> bool:
    """Whether this stage's fit goes into a shared folder. Never under DDP: all ranks fit in the
    job's own folder, lock-free, and every rank reads the same answer from the trainer's config."""
    return stage.fine_tunes() and not budget_active and not ddp.distributed(cfg)


def longer(folder: Path, epochs: int) -> bool:
    """Whether the folder holds a fit that ran more than `epochs` epochs."""
    return resume.held(folder) > epochs


@contextmanager
def claimed(cfg, data: dict, stages: list[dict], i: int, epochs: int):
    """Stage `i`'s shared folder, held under its lock while the stage fits in it; a folder of its
    own (its epochs in the name) when the shared one holds a longer fit. Decided under the lock: a
    job that waited may find the fit it waited for grown past its own epochs."""
    root = Path(cfg.paths.index_dir) / "stages" / key(cfg, data, stages, i)
    root.parent.mkdir(parents=True, exist_ok=True)
    with cache.locked(root.parent / f"{root.name}.lock"):
        if not longer(root, epochs):
            yield root
            return
    own = root.with_name(f"{root.name}-e{epochs}")
    with cache.locked(own.parent / f"{own.name}.lock"):
        yield own


def reused(record: dict) -> dict:
    """How many of the stage's epochs came from an earlier fit, and how many it trained (nothing for
    a stage that records no fit)."""
    if "epochs" not in record:
        return {}
    epochs = record["epochs"] or 0
    before = min(record.get("resumed_from_epoch") or 0, epochs)
    return {"epochs_reused": before, "epochs_trained": epochs - before}
