"""Entry point: hands the composed config to compressor.app and nothing else.

A config that cannot be composed (an unknown key or group option, an override that does not
parse, a run folder that cannot be made) is reported by Hydra as several lines or a traceback;
here it becomes one `error:` line and exit status 2, like every other bad input.
HYDRA_FULL_ERROR=1 keeps Hydra's full report."""
import os
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from compressor.cli import job

    return job(cfg)


def cli():
    from compressor.errors import one_line_hydra_error

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; we print one line
    try:
        main()
    except Exception as exc:
        message = None if full else one_line_hydra_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
