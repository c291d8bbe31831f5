"""Distillation with the teacher run once per training image instead of once per batch of every
epoch: its logits over the training split, computed in eval mode before the fit, ride along with
each batch as a third element (compressor.modules.Distiller reads them).

Exact only where the data hold no random augmentation (every loader of compressor.data: tensors or
a fixed resize), and only for the terms that read logits alone (ce, kl, dkd); the stage falls back
to the live teacher otherwise (compressor/stages/kd.py)."""

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from compressor.measure import channels_last


class WithLogits(Dataset):
    def __init__(self, data: Dataset, logits: torch.Tensor):
        self.data, self.logits = data, logits

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return x, y, self.logits[i]


@torch.no_grad()
def computed(teacher: torch.nn.Module, data: Dataset, batch_size: int) -> torch.Tensor:
    """The teacher's logits for every image of `data`, in its order."""
    teacher.eval()
    device = next(teacher.parameters()).device
    return channels_last(
        teacher,
        lambda: torch.cat([teacher(x.to(device)).float().cpu() for x, _ in DataLoader(data, batch_size=batch_size)]),
        device,
    )


class TeacherLogits(L.LightningDataModule):
    """`dm` with its training batches carrying the teacher's logits; validation as it was."""

    def __init__(self, dm, logits: torch.Tensor):
        super().__init__()
        self.dm, self.logits = dm, logits

    def setup(self, stage=None):
        self.dm.setup(stage)

    def train_dataloader(self):
        return self.dm._loader(WithLogits(self.dm.train_set, self.logits), True)

    def val_dataloader(self):
        return self.dm.val_dataloader()


def applies(dm, weights: dict) -> bool:
    """Whether the logits can be computed once: the terms read logits only, and the data module is
    one of compressor.data's (its training split is a fixed, indexable dataset)."""
    return set(weights) <= {"ce", "kl", "dkd"} and hasattr(dm, "_loader") and getattr(dm, "train_set", None) is not None


def riding(teacher, dm, checkpoint_dir, epochs: int):
    """`dm` with `teacher`'s logits riding along each training batch, computed once here (where
    `applies`); `dm` itself for a fit that trains nothing (its epochs are all in the checkpoint: a
    search's reused distillation)."""
    from compressor.training.resume import finished

    if finished(checkpoint_dir, epochs):
        return dm
    dm.setup("fit")
    return TeacherLogits(dm, computed(teacher, dm.train_set, dm.batch_size))
