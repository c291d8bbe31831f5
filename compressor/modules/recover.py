"""Recovery: what a compression stage fine-tunes against.

`technique.recover=none` fine-tunes on the labels (cross-entropy). `technique.recover=kd`
fine-tunes against the model as it was before the stage, frozen: the reference in a single
stage, the stage's input in a pipeline. It reuses the distillation module and its loss terms
(`technique.recover_weights`, `technique.recover_temperature`). That model's logits for each training
image are computed once before the fit, where the terms read logits alone (`data`)."""

import copy

from omegaconf import OmegaConf

from compressor.modules.classifier import Classifier


def module(stage, model, num_classes: int, example, optim: dict):
    """The LightningModule that fine-tunes `model` in this stage."""
    if stage.get("recover", "none") != "kd":
        return Classifier(model, num_classes, **optim)
    from compressor.modules.distiller import Distiller

    teacher = copy.deepcopy(model).eval()  # before the stage's callback changes `model`
    weights = OmegaConf.to_container(stage.recover_weights, resolve=True)
    return Distiller(
        student=model,
        teacher=teacher,
        example=example,
        weights=weights,
        temperature=stage.recover_temperature,
        num_classes=num_classes,
        **optim,
    )


def data(module, dm, checkpoint_dir, epochs: int):
    """The fit's data: under recover=kd, each training image's logits from the frozen model computed
    once (compressor/training/teacher_logits.py: a forward per image instead of one per image and
    epoch), where its terms read logits alone; `dm` otherwise."""
    from compressor.modules.distiller import Distiller
    from compressor.training import teacher_logits

    if not isinstance(module, Distiller) or not teacher_logits.applies(dm, module.weights):
        return dm
    return teacher_logits.riding(module.teacher, dm, checkpoint_dir, epochs)
