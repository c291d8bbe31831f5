"""Checks that need torch and the real data, run after the data load and before any training:
each model takes one real batch, and gives one score per class."""

import torch
from torch import nn

from compressor.errors import ConfigError, brief


def first_batch(dm) -> torch.Tensor:
    """Two images from the validation loader (never shuffled: the training order is untouched)."""
    batch = next(iter(dm.val_dataloader()))
    images = batch[0] if isinstance(batch, (list, tuple)) else batch
    return images[:2]


@torch.no_grad()
def forward(model: nn.Module, images: torch.Tensor, key: str, num_classes: int) -> None:
    """One forward pass of `model` on real images, in a copy's eval mode: a model that cannot take
    the data's image size, or gives the wrong number of outputs, is one line before training."""
    shape = list(images.shape)
    training = model.training
    model.eval()
    try:
        out = model(images)
    except Exception as exc:  # any layer may reject the shape: conv kernels, reshapes, attention
        raise ConfigError(
            f"{key}: {type(model).__name__} cannot take the data's input of shape {shape} "
            f"(dataset.image_size / in_channels; {brief(exc, 200)}); choose a model "
            f"for this image size or set dataset.image_size"
        ) from None
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"{key}: {type(model).__name__} gives outputs of shape {got} for input {shape}; expected "
            f"[batch, {num_classes}] (dataset.num_classes={num_classes})"
        )
