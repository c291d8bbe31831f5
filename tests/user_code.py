"""What a user brings: a model of their own and a LightningDataModule of their own (on the real
scikit-learn digits, 8x8), written without any compressor base class."""

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

MODEL = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels, num_classes, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(4 * width, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
"""

MODEL_YAML = """name: tinynet
net:
  _target_: mynet.TinyNet
  in_channels: ${dataset.in_channels}
  num_classes: ${dataset.num_classes}
checkpoint: null
"""


def write_user_folder(folder):
    """A working folder with mynet.py and conf/model/tinynet.yaml, as the README describes."""
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "mynet.py").write_text(MODEL)
    (folder / "conf" / "model" / "tinynet.yaml").write_text(MODEL_YAML)
    return folder


class DigitsModule(L.LightningDataModule):
    def __init__(self, batch_size: int = 64, num_classes: int = 10):
        super().__init__()
        self.batch_size, self.num_classes = batch_size, num_classes
        self.in_channels, self.image_size = 1, 8

    def setup(self, stage=None):
        digits = load_digits()
        x = (torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16 - 0.3) / 0.4
        y = torch.tensor(digits.target)
        keep = y < self.num_classes
        data = TensorDataset(x[keep], y[keep])
        n = len(data)
        self.train, self.val, self.test = torch.utils.data.random_split(
            data, [n - 2 * (n // 5), n // 5, n // 5], generator=torch.Generator().manual_seed(0)
        )

    def train_dataloader(self):
        return DataLoader(self.train, self.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.val, self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test, self.batch_size)


class NoClasses(L.LightningDataModule):
    """Lacks num_classes: refused in one line."""
