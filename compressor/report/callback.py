import logging
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """At the end of a multirun, writes summary.md, summary.csv and the plots into the sweep dir."""

    def on_multirun_end(self, config, **kwargs):
        from compressor.report.build import build

        sweep = Path(config.hydra.sweep.dir)
        if sweep.is_dir() and any(sweep.rglob("results.json")):
            out = build(sweep)
            table = [line for line in out.read_text().splitlines() if line.startswith("|")]
            print("\n".join(table))  # the comparison, on the console as in summary.md
            log.info("report: %s", out)
