"""Images in per-class folders: RVL-CDIP small (seed 000) and any `image_folder`.

Layout: `root/<class>/*.png`, or `root/{train,val,test}/<class>/*.png` when the data come split.
Missing split folders are cut from the training images with the seed. Every image is opened and
decoded once at setup, so an unreadable one (a text file named .png, a truncated file) is one
line naming it before training starts; `skip_bad_images=true` skips and counts them instead."""
import logging
from pathlib import Path

from PIL import Image
from torch.utils.data import Subset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from compressor.data.base import ClassificationData
from compressor.errors import ConfigError, brief


log = logging.getLogger("compressor")


def unreadable(path: str) -> str | None:
    """Why an image file cannot be decoded, or None (PIL's verify() misses truncated JPEGs; load() does not)."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
        return brief(exc)
    return None


class ImageFolderData(ClassificationData):
    def __init__(self, data_dir: str | None, skip_bad_images: bool = False, **kw):
        super().__init__(**kw)
        if data_dir is None:
            raise ConfigError("dataset.data_dir is not set: give the folder of <class>/<image> folders")
        self.data_dir = Path(data_dir)
        self.skip_bad_images = skip_bad_images
        self.skipped = []

    def _valid(self, path: str) -> bool:
        if not has_file_allowed_extension(path, IMG_EXTENSIONS):
            return False
        why = unreadable(path)
        if why is None:
            return True
        if not self.skip_bad_images:
            raise ConfigError(f"dataset.data_dir: {path} is not a readable image ({why}); remove it, or set "
                              f"dataset.skip_bad_images=true to skip such files")
        self.skipped.append(path)
        return False

    def _folder(self, path: Path):
        before = len(self.skipped)
        ds = datasets.ImageFolder(str(path), transform=self.transform(), is_valid_file=self._valid)
        if len(self.skipped) > before:
            log.warning("dataset.skip_bad_images: skipped %d unreadable image(s) in %s (first: %s)",
                        len(self.skipped) - before, path, self.skipped[before])
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
