"""The small CNNs and the MLP of the seed studies, one class each, read top to bottom.

Every net is `features` (conv stack) -> `flatten` -> `classifier`, so distillation taps and
pruning globs can name the same places on every model."""

import torch
from torch import nn


def _flat_dim(features: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, in_channels, image_size, image_size)).numel()


class FeatureNet(nn.Module):
    """features -> flatten -> classifier: the contract distillation taps and pruning globs rely on."""

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def _block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2)] if pool else layers


class SimpleCNN(FeatureNet):
    """Seed 000's baseline and teacher: three conv-bn-relu blocks, then a two-layer head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(in_channels, w, True),
            *_block(w, 2 * w, image_size >= 8),
            *_block(2 * w, 4 * w, False),
            nn.AdaptiveAvgPool2d(4),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True), nn.Dropout(0.25), nn.Linear(256, num_classes)
        )


class SmallCNN(FeatureNet):
    """Seed 000's student: two narrow conv blocks and one linear layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            *_block(in_channels, width, True), *_block(width, 2 * width, False), nn.AdaptiveAvgPool2d(4)
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(2 * width * 16, num_classes))


class DeepNN(FeatureNet):
    """Seed 002's teacher (the PyTorch knowledge-distillation tutorial's DeepNN)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if image_size >= 8 else nn.Identity(),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(_flat_dim(self.features, in_channels, image_size), 512),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(512, num_classes),
        )


class LightNN(FeatureNet):
    """Seed 002's student (the tutorial's LightNN)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if image_size >= 8 else nn.Identity(),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(_flat_dim(self.features, in_channels, image_size), 256),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(256, num_classes),
        )


class MnistCNN(FeatureNet):
    """Seed 003's teacher: 32 filters 5x5, max-pool 5x5, FC 128. Padding keeps 8x8 inputs valid."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        pad = 0 if image_size >= 10 else 2
        after_conv = image_size - 4 + 2 * pad
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(min(5, after_conv))
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(_flat_dim(self.features, in_channels, image_size), 128), nn.ReLU(), nn.Linear(128, num_classes)
        )


class MnistMLP(FeatureNet):
    """Seed 003's student: a 784-128-10 feed-forward net (input size follows the dataset)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, hidden: int = 128):
        super().__init__()
        self.features = nn.Identity()
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
