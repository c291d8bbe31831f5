"""Every model works on every dataset: channels, size and classes come from the dataset config."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("student_of_"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml") if p.stem != "datamodule")  # yours: no numbers


def test_groups_are_complete():
    assert {
        "simple_cnn",
        "small_cnn",
        "resnet18",
        "resnet_student",
        "deep_nn",
        "light_nn",
        "mnist_cnn",
        "mnist_mlp",
        "resnet50",
        "mobilenet_v2",
    } <= set(MODELS)
    assert {"mnist5k", "digits", "mnist", "cifar10", "rvl_cdip", "image_folder"} <= set(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_forward_every_model_on_every_dataset(model, dataset):
    if model == "timm":
        pytest.importorskip("timm", reason="timm is not installed: it is the optional extra compressor[timm]")
    ds = OmegaConf.load(CONF / "dataset" / f"{dataset}.yaml")
    net_cfg = OmegaConf.load(CONF / "model" / f"{model}.yaml").net
    net_cfg.in_channels, net_cfg.num_classes = ds.in_channels, ds.num_classes
    if "image_size" in net_cfg:  # timm's models take any size
        net_cfg.image_size = ds.image_size
    net = instantiate(net_cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(2, ds.in_channels, ds.image_size, ds.image_size))
    assert out.shape == (2, ds.num_classes)
    assert torch.isfinite(out).all()


def test_choices_match_what_implements_them():
    """validate.py checks choices against compressor/choices.py (no heavy imports); the classes
    that act on them must offer exactly those."""
    from compressor import choices
    from compressor.modules import losses
    from compressor.modules.classifier import OPTIMIZERS

    assert tuple(OPTIMIZERS) == choices.OPTIMIZERS
    assert tuple(losses.TERMS) == choices.LOSS_TERMS
