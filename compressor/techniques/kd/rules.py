"""technique=kd's schema, torch-free: checked before torch loads (stage.py); the Distiller checks
its loss terms with the same compressor.rules.check_terms."""

from compressor import rules
from compressor.errors import ConfigError

RULES = {
    "temperature": rules.number(gt=0),
    "dkd_alpha": rules.number(ge=0),
    "dkd_beta": rules.number(ge=0),
    "weights": (lambda v: isinstance(v, dict), "a mapping of loss term to weight"),
    "teacher_once": rules.boolean(),
}
# the terms that read a tap: (model config key, distiller student key, distiller teacher key)
TAPS = {
    "cosine": ("hidden", "student_hidden", "teacher_hidden"),
    "feature_mse": ("feature", "student_feature", "teacher_feature"),
}


def check_loss(prefix: str, node) -> None:
    """`loss` names one of the config's presets (`weights` interpolates it)."""
    presets = list(node.get("presets", {}))
    if "weights" not in node or node.get("loss") not in presets:
        raise ConfigError(
            f"{prefix}loss={node.get('loss')!r}: choose one of {', '.join(presets)} "
            f"(or set {prefix}weights={{term: weight}})"
        )
