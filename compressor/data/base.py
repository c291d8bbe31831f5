"""The shared base of every dataset: deterministic splits, loaders, the image transform."""
import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset
from torchvision import transforms

from compressor.data import rules
from compressor.errors import ConfigError


def example_input(in_channels: int, image_size: int, batch: int = 1) -> torch.Tensor:
    """A fixed random batch of the shape the models take: what export, MACs and latency trace."""
    return torch.randn(batch, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(0))


def image_transform(in_channels: int, image_size: int, mean: list, std: list) -> transforms.Compose:
    """PIL image -> normalised tensor of the shape the models expect (used for folders and predict)."""
    gray = [transforms.Grayscale(in_channels)] if in_channels in (1, 3) else []
    return transforms.Compose([*gray, transforms.Resize((image_size, image_size)), transforms.ToTensor(),
                               transforms.Normalize(list(mean), list(std))])


class EpochShuffle(Sampler):
    """A shuffle that is a pure function of (seed, epoch), which Lightning sets each epoch: a fit
    resumed at epoch k sees the batches an uninterrupted one would have (a sampler that draws
    from one generator across epochs restarts from epoch 0's order)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class ClassificationData(L.LightningDataModule):
    """Subclasses implement `load()` -> (train, val, test) datasets of (image tensor, label)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, mean: list, std: list,
                 batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, train_size: int | None = None, **_):
        super().__init__()
        rules.dataset(dict(in_channels=in_channels, image_size=image_size, num_classes=num_classes, mean=list(mean),
                              std=list(std), batch_size=batch_size, num_workers=num_workers, val_fraction=val_fraction,
                              test_fraction=test_fraction, seed=seed, train_size=train_size))
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes
        self.mean, self.std = list(mean), list(std)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.train_size = train_size
        self.train_set = self.val_set = self.test_set = None

    # -- what subclasses provide -------------------------------------------------------
    def load(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------
    def fingerprint(self) -> str | None:
        """What the cache key holds of these data (compressor/data/fingerprint.py)."""
        from compressor.data.fingerprint import of_splits

        return of_splits(self.train_set, self.val_set, self.test_set)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train, self.val_set, self.test_set = self.load()
            if self.train_size is not None:  # the first train_size of the seeded training split
                if self.train_size > len(train):
                    raise ConfigError(f"dataset.train_size={self.train_size}: the training split has only "
                                      f"{len(train)} images; use at most {len(train)}, or null for all")
                train = Subset(train, range(self.train_size))
            self.train_set = train

    def transform(self) -> transforms.Compose:
        return image_transform(self.in_channels, self.image_size, self.mean, self.std)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], shape (N, C, H, W) -> normalised float32."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() - mean) / std

    def split(self, n: int, with_test: bool = True) -> tuple[list, list, list]:
        """A seeded permutation cut into train/val/test index lists (test empty when with_test=False)."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_test = round(n * self.test_fraction) if with_test else 0
        n_val = round(n * self.val_fraction)
        return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]

    def tensor_splits(self, images: torch.Tensor, labels: torch.Tensor):
        data = TensorDataset(self.normalise(images), labels.long())
        return tuple(Subset(data, idx) for idx in self.split(len(labels)))

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=EpochShuffle(len(data), self.seed) if shuffle else None,
                          persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)

