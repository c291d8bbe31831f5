"""Entry point: hands the composed config to compressor.app and nothing else."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from compressor.app import main as run

    return run(cfg)


if __name__ == "__main__":
    main()
