"""The stage class a project technique config names: conf/technique/<name>.yaml's `_target_`, the
one registry. The search's space and the report read what a technique declares through it."""

from compressor.errors import ConfigError


def stage(name: str, prefix: str) -> tuple[str, type]:
    """(kind, stage class) of conf/technique/<name>.yaml; ConfigError (one line, from `prefix`) when
    there is no such file or it names no Stage (the baseline and the pipeline)."""
    from omegaconf import OmegaConf

    from compressor.config import CONF
    from compressor.techniques.base import stage_class

    path = CONF / "technique" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{prefix}names {name!r}: no conf/technique/{name}.yaml")
    node = OmegaConf.load(path)
    return node.get("kind"), stage_class(f"{prefix}{name}: ", node)


def names() -> list[str]:
    """Every technique config the project holds."""
    from compressor.config import CONF

    return sorted(p.stem for p in (CONF / "technique").glob("*.yaml"))
