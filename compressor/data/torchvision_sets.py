"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own classes under `data_dir`.

They download when a network exists; with the files present they load offline; without them
they stop with one line that names the path and how to obtain the data."""
import errno
import gzip
import hashlib
import os
import shutil
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


class FashionMnist(Mnist):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28x28 grey, 10
    classes, through torchvision's own FashionMNIST class. The files come from, in this order:
    `dataset.data_dir` (the four idx files, .gz or not, or torchvision's FashionMNIST/raw layout),
    the folder of Debian's package dataset-fashion-mnist, or torchvision's download into
    `dataset.extract_dir` where the machine has a network. torchvision reads uncompressed idx
    files, so .gz files are decompressed once into `dataset.extract_dir`."""

    source = datasets.FashionMNIST
    layout = "the four idx files (train/t10k-images-idx3-ubyte, -labels-idx1-ubyte, .gz or not)"
    SYSTEM = "/usr/share/datasets/fashion-mnist"  # where `apt-get install dataset-fashion-mnist` puts them
    FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def __init__(self, data_dir: str | None = None, extract_dir: str = "data", download: bool = True,
                 system_dir: str = SYSTEM, **kw):
        super().__init__(data_dir=extract_dir, download=download, **kw)
        self.given, self.system_dir, self.extract_dir = data_dir, system_dir, Path(extract_dir)
        self.root = None

    def _locate(self) -> str:
        """torchvision's root folder: where FashionMNIST/raw holds the four uncompressed files."""
        for folder, key in ((self.given, "dataset.data_dir"), (self.system_dir, None)):
            if folder is None:
                continue
            folder = Path(folder)
            if all((folder / "FashionMNIST" / "raw" / f).is_file() for f in self.FILES):
                return str(folder)
            if all(self._source(folder, f) for f in self.FILES):
                return self._extract(folder)
            if key is not None:
                raise ConfigError(f"{key}={folder.resolve()}: holds no Fashion-MNIST; put {self.layout} there")
        if not self.download:
            raise ConfigError(self._missing("dataset.download=false"))
        return str(self.extract_dir)

    def _source(self, folder: Path, name: str) -> Path | None:
        """`folder`'s copy of one idx file, uncompressed or .gz, or None."""
        return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)

    def _extract(self, folder: Path) -> str:
        """The idx files of `folder`, uncompressed into extract_dir/<their fingerprint>/FashionMNIST/raw."""
        sources = [self._source(folder, f) for f in self.FILES]
        tag = hashlib.sha256(repr([(str(p.resolve()), p.stat().st_size) for p in sources]).encode()).hexdigest()[:12]
        root = self.extract_dir / f"fashion_mnist-{tag}"
        raw = root / "FashionMNIST" / "raw"
        for name, source in zip(self.FILES, sources):
            if (raw / name).is_file():
                continue
            raw.mkdir(parents=True, exist_ok=True)
            tmp = raw / f"{name}.tmp-{os.getpid()}"
            try:
                with (gzip.open if source.suffix == ".gz" else open)(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, raw / name)
            except (OSError, EOFError) as exc:
                tmp.unlink(missing_ok=True)
                if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise ConfigError(f"{source}: not readable ({type(exc).__name__}); reinstall dataset-fashion-mnist "
                                  f"or give dataset.data_dir") from None
        return str(root)

    def _missing(self, why: str) -> str:
        return (f"dataset=fashion_mnist: no Fashion-MNIST files: dataset.data_dir is not set, the Debian package "
                f"dataset-fashion-mnist is not installed ({self.system_dir}), and {why}; run "
                f"`apt-get install dataset-fashion-mnist`, give dataset.data_dir=<folder with the four idx .gz "
                f"files>, or run once with a network")

    def _open(self, train: bool):
        if self.root is None:
            self.root = self._locate()
        downloading = self.root == str(self.extract_dir)
        try:
            return self.source(self.root, train=train, download=self.download and downloading)
        except Exception as exc:  # failed download (no network), or a damaged idx file
            if not downloading:
                raise ConfigError(f"{self.root}/FashionMNIST/raw: idx files torchvision cannot read "
                                  f"({type(exc).__name__}); give dataset.data_dir the original files") from None
            raise ConfigError(self._missing(f"the download failed ({type(exc).__name__})")) from None
