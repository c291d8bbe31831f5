"""torchvision's ResNets and MobileNetV2, adapted to any channel count, image size and class count.

ImageNet weights are used only when they already sit in the local torch hub cache: nothing is
downloaded. Otherwise the net starts from random init and says so."""

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

log = logging.getLogger(__name__)


def _cached_weights(weights_enum) -> dict | None:
    if weights_enum is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name
    if path.is_file():
        log.info("loading ImageNet weights from %s", path)
        return torch.load(path, map_location="cpu", weights_only=True)
    log.warning("pretrained weights not in the local torch cache (%s): random init", path)
    return None


def _adapt_resnet(net: ResNet, in_channels: int, num_classes: int, small_stem: bool) -> ResNet:
    if small_stem:  # 3x3 stride-1 stem and no max-pool: the usual CIFAR-sized ResNet
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def _load_backbone(net: nn.Module, state: dict | None) -> None:
    if state is None:
        return
    own = net.state_dict()
    state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(state, strict=False)


def resnet18(in_channels=3, num_classes=10, image_size=32, small_stem=None, pretrained=False) -> ResNet:
    net = torchvision.models.resnet18()
    _load_backbone(net, _cached_weights(torchvision.models.ResNet18_Weights.IMAGENET1K_V1) if pretrained else None)
    return _adapt_resnet(net, in_channels, num_classes, image_size < 96 if small_stem is None else small_stem)


def resnet50(in_channels=3, num_classes=10, image_size=32, small_stem=None, pretrained=False) -> ResNet:
    net = torchvision.models.resnet50()
    _load_backbone(net, _cached_weights(torchvision.models.ResNet50_Weights.IMAGENET1K_V2) if pretrained else None)
    return _adapt_resnet(net, in_channels, num_classes, image_size < 96 if small_stem is None else small_stem)


def resnet_student(in_channels=3, num_classes=10, image_size=32, small_stem=None) -> ResNet:
    """Seed 001's compact student: a ResNet-10 (one BasicBlock per stage), about 44% of ResNet-18."""
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    return _adapt_resnet(net, in_channels, num_classes, image_size < 96 if small_stem is None else small_stem)


def mobilenet_v2(in_channels=3, num_classes=10, image_size=32, pretrained=False) -> nn.Module:
    net = torchvision.models.mobilenet_v2()
    _load_backbone(net, _cached_weights(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1) if pretrained else None)
    if in_channels != 3:
        old = net.features[0][0]
        net.features[0][0] = nn.Conv2d(in_channels, old.out_channels, 3, old.stride, 1, bias=False)
    if image_size < 96:  # keep small images from shrinking to nothing: stride 1 in the stem
        net.features[0][0].stride = (1, 1)
    net.classifier[-1] = nn.Linear(net.last_channel, num_classes)
    return net
