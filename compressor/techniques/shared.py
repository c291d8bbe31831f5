"""The settings a stage's fit and its recovery take, each declared once here and listed by every
technique's settings class that uses it, with that technique's own default where one differs
(QAT's learning rate is not pruning's)."""

from dataclasses import dataclass

from compressor import choices
from compressor.settings import boolean, choice, integer, number, setting

# the settings the stage's fit reads: a technique's callback is not given them
FIT = (
    "epochs",
    "lr",
    "schedule_epochs",
    "recover",
    "recover_weights",
    "recover_temperature",
    "patience",
    "stop_within",
)


def epochs(default: int):
    return setting(default, integer(0), "fine-tune epochs")


def lr(default: float):
    return setting(default, number(gt=0), "the fine-tune's learning rate")


def schedule_epochs():
    return setting(
        None,
        integer(1, optional=True),
        "epochs the learning-rate schedule spans (null: epochs); the search's first rung sets its full length",
    )


def recover():
    return setting("none", choice(choices.RECOVERY), "fine-tune against the model as it was before this stage (frozen)")


def recover_weights():
    return setting(
        {"ce": 0.5, "kl": 0.5},
        (lambda v: isinstance(v, dict), "a mapping of loss term to weight"),
        "recover=kd: its distillation terms and weights (see technique=kd)",
    )


def patience(default: int | None = None):
    return setting(
        default,
        integer(1, optional=True),
        "stop the fine-tune after this many epochs without a better validation accuracy and keep the best "
        "(null: all `epochs`; `epochs` is then the most it runs)",
    )


def stop_within(default: bool = False):
    return setting(
        default,
        boolean(),
        "with budget.max_drop: stop the fine-tune at the first epoch back within the stage's budget",
    )


def recover_temperature():
    return setting(4.0, number(gt=0), "recover=kd: its softmax temperature")


@dataclass
class FineTune:
    """The settings of a stage that fine-tunes through its callback and may recover (prune, quant,
    cluster, nm): a technique's settings class subclasses it, redeclaring `epochs` or `lr` where
    its default differs."""

    epochs: int = epochs(2)
    lr: float = lr(1.0e-4)
    schedule_epochs: int | None = schedule_epochs()
    recover: str = recover()
    recover_weights: dict = recover_weights()
    recover_temperature: float = recover_temperature()
    patience: int | None = patience()
    stop_within: bool = stop_within()
