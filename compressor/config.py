"""Compose the project's config outside the command line (tests, benchmarks, notebooks)."""

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


def conf_dir() -> Path:
    """The packaged configs: compressor/conf, a folder in an installed wheel and a link to conf/ in a
    checkout (conf/ itself where a checkout could not make the link)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml in {here} or {here.parent}: a broken install")


CONF = conf_dir()


def compose(overrides=(), outputs="outputs", run_name="run") -> DictConfig:
    """The config `python run.py OVERRIDES` would get, writing under `outputs/`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    outputs = Path(outputs).resolve()
    with open_dict(cfg):
        cfg.paths.root = str(outputs)
        cfg.paths.run_dir = str(outputs / run_name)
        cfg.paths.cache_dir = str(outputs / "cache")
        cfg.paths.index_dir = str(outputs / "index")
        del cfg["hydra"]
    return cfg
