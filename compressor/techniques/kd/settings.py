"""technique=kd's settings, torch-free: each key's default, rule and meaning (`Kd`), checked before
torch loads (stage.py); the Distiller checks its loss terms with compressor.settings.check_terms."""

from dataclasses import dataclass

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques import shared

PRESETS = {  # term -> weight; the total loss is their weighted sum
    "ce": {"ce": 1.0},  # the student trained alone, for comparison
    "kl": {"kl": 1.0},  # seed 003: plain KL
    "ce_kl": {"ce": 0.5, "kl": 0.5},  # the default: labels and teacher half and half
    "hinton_kl": {"ce": 0.3, "kl": 0.7},  # seed 001: alpha*KL + (1-alpha)*CE, T=4
    "cosine": {"ce": 0.75, "cosine": 0.25},  # seed 002: hidden-representation cosine loss
    "feature_mse": {"ce": 0.75, "feature_mse": 0.25},  # seed 002: regressor + feature-map MSE
    "dkd": {"ce": 1.0, "dkd": 1.0},  # decoupled KD (Zhao et al. 2022)
}
MAPPING = (lambda v: isinstance(v, dict), "a mapping of loss term to weight")
TAP = (lambda v: v is None or isinstance(v, str), "a module path (or null: the input of the last Linear)")


@dataclass
class Kd:
    loss: str = s.setting("ce_kl", s.text(), "a preset of `presets`: " + " | ".join(PRESETS))
    temperature: float = s.setting(
        1.0, s.number(gt=0), "softmax temperature (experiments/README.md: distillation defaults)"
    )
    dkd_alpha: float = s.setting(1.0, s.number(ge=0), "dkd: weight of the target-class term")
    dkd_beta: float = s.setting(8.0, s.number(ge=0), "dkd: weight of the non-target-class term")
    presets: dict = s.setting(PRESETS, MAPPING, "named weightings of the loss terms")
    weights: dict | str = s.setting("${.presets.${.loss}}", MAPPING, "term -> weight (the preset `loss` names)")
    teacher_once: bool = s.setting(
        True,
        s.boolean(),
        "the teacher's logits computed once per training image, not every batch (loss terms ce/kl/dkd)",
    )
    epochs: int = shared.epochs(4)
    lr: float = shared.lr(3.0e-3)
    schedule_epochs: int | None = shared.schedule_epochs()
    student_hidden: str | None = s.setting("${oc.select:model.hidden,null}", TAP, "the tap the cosine term reads")
    teacher_hidden: str | None = s.setting("${oc.select:teacher.hidden,null}", TAP, "the tap the cosine term reads")
    student_feature: str | None = s.setting("${oc.select:model.feature,null}", TAP, "the tap feature_mse reads")
    teacher_feature: str | None = s.setting("${oc.select:teacher.feature,null}", TAP, "the tap feature_mse reads")


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
