"""The command line: `python run.py` in a checkout, the installed `compressor` command anywhere.

Values are checked first, before torch and Lightning are imported, so a bad value costs a second
rather than the ten that those imports take; then compressor.job runs it. Every bad input,
from Hydra's composition or from either phase, ends the program as one `error:` line on stderr
with exit status 2 (HYDRA_FULL_ERROR=1 keeps Hydra's full report)."""
import errno
import os
import sys
from pathlib import Path

from compressor.errors import ConfigError, Interrupted, one_line_hydra_error

FULL = (errno.ENOSPC, errno.EDQUOT)


def job(cfg):
    """One job: exit 2 for bad input (one line), 1 for a full disk (one line naming the folder),
    130 for Ctrl-C and 143 for SIGTERM (one line: the same command continues from the last epoch)."""
    from compressor import dispatch, validate

    try:
        validate.values(cfg)
        return dispatch(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted) as exc:
        what = exc.args[1] if isinstance(exc, Interrupted) else "SIGINT"
        where = f" in {exc.args[0]}" if isinstance(exc, Interrupted) else ""
        then = ("under SLURM a job stopped at its time limit or by preemption is requeued by submitit and resumes "
                "from the last one; after scancel, run the same command again to continue") \
            if os.environ.get("SLURM_JOB_ID") else "run the same command again to continue from the last one"
        print(f"interrupted ({what}){where}: every finished epoch is checkpointed; {then}", file=sys.stderr)
        sys.exit(143 if what == "SIGTERM" else 130)
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        print(f"error: {existing(exc.filename2 or exc.filename or cfg.paths.run_dir)}: no space left on device ({os.strerror(exc.errno)}); free space "
              f"there or point paths.root elsewhere, then run again: nothing half-written was kept", file=sys.stderr)
        sys.exit(1)


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
    if user.is_dir() and user.resolve() != conf_dir().resolve() \
            and not any(a.startswith("hydra.searchpath=") for a in sys.argv[1:]):
        sys.argv = with_override(sys.argv, f"hydra.searchpath=[file://{user.resolve()}]")
    report_errors(hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(job))
