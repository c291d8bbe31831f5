"""The command line: `python run.py` in a checkout, the installed `compressor` command anywhere.

Values are checked first, before torch and Lightning are imported, so a bad value costs a second
rather than the ten that those imports take; then compressor.job runs it. Every bad input,
from Hydra's composition or from either phase, ends the program as one `error:` line on stderr
with exit status 2 (HYDRA_FULL_ERROR=1 keeps Hydra's full report)."""

import errno
import json
import os
import sys
from pathlib import Path

from compressor.errors import ConfigError, Interrupted, Stuck, one_line_hydra_error, sbatch_refused, slurm_gave_up

FULL = (errno.ENOSPC, errno.EDQUOT)


def job(cfg):
    """One job: exit 2 for bad input (one line), 1 for a full disk (one line naming the folder),
    130 for Ctrl-C and 143 for SIGTERM, 1 for a DDP rank that waited past ddp.timeout_s (one line: the same command continues from the last epoch).
    A job of a SLURM sweep does not exit: it leaves its line in stopped.json and the sweep goes on
    (compressor/report/callback.py names it at the end, and the sweep exits 1)."""
    from compressor import dispatch, validate

    Path(cfg.paths.run_dir, STOPPED).unlink(missing_ok=True)  # an earlier attempt's
    try:
        validate.values(cfg)
        return dispatch(cfg)
    except ConfigError as exc:
        return stop(cfg, f"error: {exc}", 2)
    except Stuck as exc:  # a DDP rank that waited past ddp.timeout_s
        return stop(cfg, exc.line(), 1)
    except (KeyboardInterrupt, Interrupted) as exc:
        what, where = (exc.what, exc.where()) if isinstance(exc, Interrupted) else ("SIGINT", "")
        return stop(
            cfg,
            f"interrupted ({what}){where}: every finished epoch is checkpointed; run the same command "
            f"again to continue from the last one",
            143 if what == "SIGTERM" else 130 if what == "SIGINT" else 1,
        )
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        return stop(
            cfg,
            f"error: {existing(exc.filename2 or exc.filename or cfg.paths.run_dir)}: no space left on device "
            f"({os.strerror(exc.errno)}); free space there or point paths.root elsewhere, then run again: "
            f"nothing half-written was kept",
            1,
        )
    except Exception as exc:
        if not slurm_gave_up(exc):
            raise
        return stop(
            cfg,
            "interrupted (SLURM's time limit, no requeue left): every finished epoch is checkpointed; "
            "run the same command again to continue",
            1,
        )


STOPPED = "stopped.json"


def stop(cfg, line: str, status: int):
    """The job's one line and exit status. Inside a SLURM job (submitit) it is written to the run
    folder instead of exiting, so the sweep's other jobs are still awaited and summarised."""
    print(line, file=sys.stderr)
    if not os.environ.get("SUBMITIT_FOLDER"):
        sys.exit(status)
    from hydra.core.hydra_config import HydraConfig

    run = Path(cfg.paths.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    overrides = " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""
    (run / STOPPED).write_text(
        json.dumps({"line": line, "status": status, "overrides": overrides, "slurm_job": slurm_job()})
    )
    return None


def slurm_job() -> str | None:
    """This SLURM job as squeue, sacct and scancel name it: <array job>_<task> for an array's task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def existing(filename) -> Path:
    """The nearest folder that still exists above the file a failed write named (a copy names its
    destination as filename2; a cache build's temp folder is gone by the time this runs)."""
    path = Path(str(filename or ".")).resolve()
    while not path.is_dir() and path.parent != path:
        path = path.parent
    return path


def report_errors(hydra_main) -> None:
    """Run a @hydra.main function; what Hydra would print as several lines becomes one."""
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; we print one line
    try:
        hydra_main()
    except Exception as exc:
        if slurm_gave_up(exc) and not full:  # a SLURM job that ended without answering (killed, node lost)
            print(
                f"error: {' '.join(str(exc).split())[:300]}; its finished epochs are checkpointed: run the same "
                f"command again to continue (finished jobs are read, not rerun)",
                file=sys.stderr,
            )
            sys.exit(1)
        refused = None if full else sbatch_refused(exc)
        if refused:  # sbatch's own lines were printed above by submitit; nothing was submitted
            print(f"error: {refused}", file=sys.stderr)
            sys.exit(2)
        message = None if full else one_line_hydra_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def with_override(argv: list[str], override: str) -> list[str]:
    """argv with `override` joined to the user's own overrides. Hydra's parser takes the overrides
    as one run of positional arguments, so one appended after a flag (`a=b --cfg job`, `a=b -m`)
    would be refused as an unrecognized argument: it goes at the end of the first run of
    overrides, or first when there are none."""

    def is_override(a: str) -> bool:
        return "=" in a and not a.startswith("-")

    start = next((i for i, a in enumerate(argv) if i and is_override(a)), None)
    if start is None:
        return [argv[0], override, *argv[1:]]
    end = start
    while end < len(argv) and is_override(argv[end]):
        end += 1
    return [*argv[:end], override, *argv[end:]]


def main() -> None:
    """The installed `compressor` command: the same app as run.py, from any folder. The packaged
    configs come first; ./conf, when there is one, joins Hydra's search path, so a user's
    conf/model/<name>.yaml or conf/dataset/<name>.yaml adds an option to that group
    (`--config-dir DIR` does the same for any folder). Modules in the working folder import."""
    import hydra

    from compressor.config import conf_dir

    sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: a model module in this folder imports
    user = Path.cwd() / "conf"
    if (
        user.is_dir()
        and user.resolve() != conf_dir().resolve()
        and not any(a.startswith("hydra.searchpath=") for a in sys.argv[1:])
    ):
        sys.argv = with_override(sys.argv, f"hydra.searchpath=[file://{user.resolve()}]")
    report_errors(hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(job))
