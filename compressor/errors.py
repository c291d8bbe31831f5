class ConfigError(ValueError):
    """Bad input: the message is one line that names the key or file and says what is allowed."""


def brief(exc: BaseException, limit: int = 120) -> str:
    """An exception as one line for a message: its type and the start of its text, whitespace folded."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def one_line_hydra_error(exc: BaseException) -> str | None:
    """One line for an error Hydra raises before the job starts: composition (unknown key or group
    option, bad override syntax, interpolation) or a run folder it cannot make. None for anything
    else, which is a bug and keeps its traceback."""
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    if not isinstance(exc, (HydraException, OmegaConfBaseException)):
        return None
    if isinstance(exc, OverrideParseException):
        return f"override {_bad_override()!r}: {str(exc).splitlines()[0]} (see Hydra's override grammar)"
    parts = [str(exc)]
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause) not in parts[0]:
        parts.append(str(cause).splitlines()[0])  # e.g. "Key 'amout' is not in struct"
    lines = [line.strip() for part in parts for line in part.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("object_type=", "See https://"))]
    text = " ".join(lines)
    return text.split(" Config search path:")[0]  # Hydra's list of search paths follows the options


def _bad_override() -> str:
    """The command-line override that Hydra's grammar rejects (its error does not name it)."""
    import sys

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in sys.argv[1:]:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except Exception:
            return arg
    return " ".join(sys.argv[1:])


class Diverged(ConfigError):
    """A fit whose loss or weights stopped being finite: the message names the fit, the epoch and
    the knob to lower. Nothing of that fit is cached or written as a result."""


class Interrupted(Exception):
    """Ctrl-C, SIGTERM (scancel) or SLURM's last time limit during a fit: what was checkpointed stays,
    and the same command continues from it. args: (the fit's name, what stopped it, epochs done,
    epochs in all); the last two are None where no fit was running."""

    def __init__(self, name: str, what: str, done: int | None = None, total: int | None = None):
        super().__init__(name, what, done, total)
        self.name, self.what, self.done, self.total = name, what, done, total

    def where(self) -> str:
        return f" in {self.name}" + (f" after {self.done} of {self.total} epochs" if self.done is not None else "")


class Stuck(Interrupted):
    """A DDP rank that waited for the others (a collective, the fit's start) or for a lock longer than
    ddp.timeout_s: the run ends rather than hang. Like an interruption, what was checkpointed stays
    (nothing is cached) and `command` continues the run."""

    def __init__(
        self,
        name: str,
        rank: int,
        world: int,
        waited_on: str,
        seconds: float,
        command: str,
        done: int | None = None,
        total: int | None = None,
    ):
        super().__init__(name, f"rank {rank} of {world} waited {seconds:g} s for {waited_on}", done, total)
        self.command = command

    def line(self) -> str:
        return (
            f"stopped: {self.what}{self.where()} and gave up (ddp.timeout_s); nothing of it was cached; "
            f"run `{self.command}` to continue from the last finished epoch"
        )


# what sbatch says when it refuses a job, and the launcher key that asks for it
SBATCH_KEYS = (
    ("memory", "hydra.launcher.mem_gb"),
    ("partition", "hydra.launcher.partition"),
    ("account", "hydra.launcher.account"),
    ("time limit", "hydra.launcher.timeout_min"),
    ("qos", "hydra.launcher.qos"),
    ("gres", "hydra.launcher.gpus_per_node"),
    ("node configuration", "hydra.launcher.cpus_per_task, tasks_per_node, nodes or gpus_per_node"),
    ("cpu", "hydra.launcher.cpus_per_task"),
)


def sbatch_refused(exc: BaseException) -> str | None:
    """One line for a job sbatch refused (submitit raises its stderr as FailedJobError): sbatch's
    reason, quoted, and the hydra.launcher key to change. None for any other error."""
    import subprocess

    cause = exc.__cause__
    if (
        type(exc).__name__ != "FailedJobError"
        or not isinstance(cause, subprocess.CalledProcessError)
        or "sbatch" not in str((cause.cmd or [""])[0])
    ):
        return None
    lines = [line.strip().removeprefix("sbatch: error:").strip() for line in str(cause.stderr or exc).splitlines()]
    reason = "; ".join(line for line in lines if line) or f"exit status {cause.returncode}"
    key = next((k for word, k in SBATCH_KEYS if word in reason.lower()), "the hydra.launcher settings")
    return f"sbatch refused the job: {reason!r}; change {key} (what the cluster allows: sinfo -o '%P %c %m %l')"


def slurm_gave_up(exc: BaseException) -> bool:
    """submitit's error for a job it will not requeue again: raised inside the job at its last time
    limit (hydra.launcher.max_num_timeout used up), and in the submitting process for a job that ended
    without a result (killed, cancelled before it could answer)."""
    return type(exc).__name__ == "UncompletedJobError" and type(exc).__module__.startswith("submitit")
