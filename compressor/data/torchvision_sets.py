"""MNIST and CIFAR-10 through torchvision's own classes under `data_dir`.

They download when a network exists; with the files present they load offline; without them
they stop with one line that names the path and how to obtain the data."""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset
from torchvision import datasets

from compressor.data.base import ClassificationData
from compressor.errors import ConfigError


class _TorchvisionData(ClassificationData):
    source: type
    layout: str

    def __init__(self, data_dir: str = "data", download: bool = True, **kw):
        super().__init__(**kw)
        self.data_dir, self.download = str(data_dir), download

    def _open(self, train: bool):
        try:
            return self.source(self.data_dir, train=train, download=self.download)
        except Exception as exc:  # missing files, failed download, corrupt archive
            where = Path(self.data_dir).resolve()
            raise ConfigError(
                f"dataset.data_dir={where}: {self.source.__name__} not found or unreadable "
                f"({type(exc).__name__}); put {self.layout} there, or run once with network access and "
                f"dataset.download=true") from None

    def prepare_data(self) -> None:
        self._open(True), self._open(False)

    def load(self):
        train, test = self._open(True), self._open(False)
        train_x, train_y = self._tensors(train)
        test_x, test_y = self._tensors(test)
        train_idx, val_idx, _ = self.split(len(train_y), with_test=False)
        full = TensorDataset(train_x, train_y)
        return Subset(full, train_idx), Subset(full, val_idx), TensorDataset(test_x, test_y)

    def _tensors(self, ds):
        raise NotImplementedError


class Mnist(_TorchvisionData):
    source = datasets.MNIST
    layout = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"

    def _tensors(self, ds):
        images = ds.data.float().div(255).unsqueeze(1)
        if self.image_size != 28:
            images = torch.nn.functional.interpolate(images, size=self.image_size, mode="bilinear")
        return self.normalise(images), ds.targets.long()


class Cifar10(_TorchvisionData):
    source = datasets.CIFAR10
    layout = "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"

    def _tensors(self, ds):
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).float().div(255)
        if self.in_channels == 1:
            images = images.mean(1, keepdim=True)
        if self.image_size != 32:
            images = torch.nn.functional.interpolate(images, size=self.image_size, mode="bilinear")
        return self.normalise(images), torch.tensor(ds.targets).long()
