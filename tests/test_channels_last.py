"""train.channels_last: a CPU fit trains a conv net in the channels-last layout and hands back
contiguous weights (what safetensors, export and quantization read); false keeps the contiguous
layout and is its own job; the default leaves every job key as it was."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from compressor import baseline, measure
from compressor.models.cnn import SimpleCNN
from compressor.modules import Classifier
from compressor.training.fit import fit, optim_args
from tests.conftest import make_cfg

CL = torch.channels_last


class Layouts(L.Callback):
    """The second conv's weight layout at every training batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        weight = pl_module.model.features[4].weight  # 32 input channels: the layouts differ
        self.seen.append(weight.is_contiguous(memory_format=CL) and not weight.is_contiguous())


class Viewed(nn.Module):
    """A user's net as they are often written: the conv output flattened with `view`, which a
    channels-last tensor cannot take."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
        )
        self.classifier = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def fitted(tmp_path, overrides=(), net=None):
    cfg = make_cfg(tmp_path, overrides)
    dm = instantiate(cfg.dataset)
    dm.setup()
    L.seed_everything(0)
    module = Classifier(net or SimpleCNN(1, 10, 8), 10, **optim_args(cfg))
    spy = Layouts()
    fit(
        cfg,
        module,
        dm,
        tmp_path / "run",
        "layout",
        1,
        callbacks=[spy],
        log_to=False,
        trainer_args={"limit_train_batches": 3, "limit_val_batches": 1},
    )
    return module, spy.seen


def test_a_cpu_fit_trains_channels_last_and_ends_contiguous(tmp_path):
    module, seen = fitted(tmp_path)
    assert seen == [True] * 3
    convs = [p for p in module.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous() for p in convs)


def test_channels_last_false_trains_contiguous(tmp_path):
    module, seen = fitted(tmp_path, ["train.channels_last=false"])
    assert seen == [False] * 3


def test_the_layout_stays_out_of_the_default_key_and_false_is_another_job(tmp_path):
    data = {"data": "fingerprint"}
    cfg = make_cfg(tmp_path)
    spec = baseline.plain(cfg)
    del spec["train"]["channels_last"]  # a config written before the key existed
    assert baseline.fingerprint(cfg, data) == baseline.fingerprint(baseline.OmegaConf.create(spec), data)
    off = make_cfg(tmp_path, ["train.channels_last=false"])
    assert baseline.fingerprint(off, data) != baseline.fingerprint(cfg, data)


def test_a_net_that_cannot_take_the_layout_trains_and_predicts_contiguous(tmp_path):
    net = Viewed().to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(RuntimeError):  # the net as written cannot run channels-last
        net(x)
    module, seen = fitted(tmp_path, net=Viewed())
    assert seen == [False] * 3  # the probe found the view failing: contiguous
    logits, _ = measure.predict(module.model, [(x, torch.zeros(2, dtype=torch.long))])
    assert logits.shape == (2, 10) and module.model.features[2].weight.is_contiguous()
