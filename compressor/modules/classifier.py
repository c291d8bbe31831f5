"""Cross-entropy training of any nn.Module, with torchmetrics accuracy logged as stage/metric."""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from compressor.choices import SCHEDULERS
from compressor.errors import ConfigError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}  # choices.OPTIMIZERS


def check_optim(optimizer: str, lr: float, scheduler: str, prefix: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"{prefix}.optimizer={optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ConfigError(f"{prefix}.lr={lr}: must be > 0")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"{prefix}.scheduler={scheduler!r}: choose one of {', '.join(SCHEDULERS)}")


def optimizer(parameters, optim: dict) -> torch.optim.Optimizer:
    """The optimizer `optim` (training/fit.py: optim_args) names, over `parameters`."""
    kwargs = {"lr": optim["lr"], "weight_decay": optim["weight_decay"]}
    if optim["optimizer"] == "sgd":
        kwargs["momentum"] = optim["momentum"]
    return OPTIMIZERS[optim["optimizer"]](parameters, **kwargs)


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str = "none",
        schedule_epochs: int | None = None,
    ):
        super().__init__()
        check_optim(optimizer, lr, scheduler, "train")
        self.model = model
        # schedule_epochs: the epochs the learning-rate schedule spans (None: the fit's own). A fit that
        # stops early on a longer schedule is the start of that longer fit, which can continue it
        self.optim = dict(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            scheduler=scheduler,
            schedule_epochs=schedule_epochs,
        )
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc(self(x), y)
        self.log("test/acc", self.test_acc)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        o = self.optim
        opt = optimizer(self.trainable_parameters(), o)
        epochs = max(1, o["schedule_epochs"] or self.trainer.max_epochs or 1)
        if o["scheduler"] == "cosine":
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)}
        if o["scheduler"] == "step":
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, max(1, epochs // 3), 0.1)}
        return opt
