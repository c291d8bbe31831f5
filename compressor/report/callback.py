import json
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """At the end of a multirun, writes summary.md, summary.csv and the plots into the sweep dir;
    then names each job that stopped without a result (a SLURM job's stopped.json: its time limit
    with no requeue left, scancel, bad input) in one line, and ends the sweep with exit status 1."""

    def on_multirun_end(self, config, **kwargs):
        from compressor.report.build import build

        sweep = Path(config.hydra.sweep.dir)
        if sweep.is_dir() and any(sweep.rglob("results.json")):
            out = build(sweep)
            table = [line for line in out.read_text().splitlines() if line.startswith("|")]
            print("\n".join(table))  # the comparison, on the console as in summary.md
            log.info("report: %s", out)
        stopped = sorted(sweep.rglob("stopped.json")) if sweep.is_dir() else []
        if stopped:
            command = ["compressor"] if Path(sys.argv[0]).name == "compressor" else ["python", sys.argv[0]]
            again = " ".join([*command, *sys.argv[1:]])
            for path in stopped:
                s = json.loads(path.read_text())
                print(
                    f"job {path.parent.relative_to(sweep)} ({s['overrides']}, SLURM job {s['slurm_job']}): "
                    f"{s['line']}: {again}",
                    file=sys.stderr,
                )
            print(
                f"error: {len(stopped)} job(s) of the sweep did not finish (above); the others are summarised",
                file=sys.stderr,
            )
            sys.exit(1)  # Hydra turns a callback's exception into a warning; the sweep did not succeed
