"""Entry point in a checkout: hands the composed config to compressor and nothing else.
(Installed, the same app is the `compressor` command: compressor/cli.py.)"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from compressor.cli import job

    return job(cfg)


if __name__ == "__main__":
    from compressor.cli import report_errors

    report_errors(main)
