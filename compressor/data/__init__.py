from compressor.data.base import ClassificationData
from compressor.data.embedded import Digits, Mnist5k
from compressor.data.folder import ImageFolderData
from compressor.data.torchvision_sets import Cifar10, FashionMnist, Mnist

__all__ = ["ClassificationData", "Digits", "Mnist5k", "ImageFolderData", "Cifar10", "FashionMnist", "Mnist"]
