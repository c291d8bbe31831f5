"""Images in per-class folders: RVL-CDIP small (seed 000) and any `image_folder`.

Layout: `root/<class>/*.png`, or `root/{train,val,test}/<class>/*.png` when the data come split.
Missing split folders are cut from the training images with the seed."""
from pathlib import Path

from torch.utils.data import Subset
from torchvision import datasets

from compressor.data.base import ClassificationData
from compressor.errors import ConfigError


class ImageFolderData(ClassificationData):
    def __init__(self, data_dir: str, **kw):
        super().__init__(**kw)
        self.data_dir = Path(data_dir)

    def _folder(self, path: Path):
        ds = datasets.ImageFolder(str(path), transform=self.transform())
        if len(ds.classes) != self.num_classes:
            raise ConfigError(f"dataset.num_classes={self.num_classes}: {path} holds {len(ds.classes)} class "
                              f"folders ({', '.join(ds.classes[:20])})")
        return ds

    def load(self):
        root = self.data_dir
        if not root.is_dir():
            raise ConfigError(f"dataset.data_dir={root.resolve()}: no such folder; expected <class>/<image> "
                              f"folders, optionally under train/, val/, test/")
        try:
            if (root / "train").is_dir():
                train = self._folder(root / "train")
                has_val, has_test = (root / "val").is_dir(), (root / "test").is_dir()
                n = len(train)
                idx_train, idx_val, idx_test = self.split(n, with_test=not has_test)
                if has_val:
                    idx_train = idx_train + idx_val
                val = self._folder(root / "val") if has_val else Subset(train, idx_val)
                test = self._folder(root / "test") if has_test else Subset(train, idx_test)
                return Subset(train, idx_train), val, test
            full = self._folder(root)
            return tuple(Subset(full, idx) for idx in self.split(len(full)))
        except (FileNotFoundError, RuntimeError) as exc:
            raise ConfigError(f"dataset.data_dir={root.resolve()}: {str(exc).splitlines()[0]}") from None
