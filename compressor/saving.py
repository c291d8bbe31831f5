"""What a job leaves in its run folder (compressor/job.py calls these): the model file,
results.json, correct.json (which images each file gets right, per split: compressor/certify.py),
the resolved config, TensorBoard, and the index entry written last; and, when a job fails, the
removal of what it wrote, so nothing partial stays."""

import shutil
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from compressor import certify, results
from compressor.baseline import plain
from compressor.runtimes.base import RuntimeModel
from compressor.storage import artifact

CORRECT = "correct.json"


def save(cfg, plan, out: dict, done: Path, partial: Path, answers: dict) -> None:
    """results.json, the answers image by image (correct.json) and the resolved config, then the index
    entry that marks the job finished (written last: a job killed before it is run again),
    TensorBoard and the summary line."""
    run_dir = Path(cfg.paths.run_dir)
    results.write(run_dir / CORRECT, certify.answers(answers["baseline"], answers["files"]))
    results.write(run_dir / "results.json", out)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    results.write(done, {"results": str(run_dir / "results.json")})
    shutil.rmtree(partial, ignore_errors=True)  # the job is done: nothing left to resume
    log_to_tensorboard(cfg, plan, run_dir, out)
    print(results.summary_line(out))


def save_model(model, run_dir: Path, cfg, records, float_model=None) -> Path:
    if isinstance(model, RuntimeModel):  # a runtime backend's file is the artifact
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
