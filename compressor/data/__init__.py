"""The datamodules, one module per family. Each class is imported when first named
(`_target_: compressor.data.FashionMnist`), so the torch-free dataset rules beside them
(compressor/data/rules.py) load before torch does."""
import importlib

WHERE = {"ClassificationData": "base", "Digits": "embedded", "Mnist5k": "embedded", "ImageFolderData": "folder",
         "Cifar10": "torchvision_sets", "FashionMnist": "torchvision_sets", "Mnist": "torchvision_sets"}
__all__ = list(WHERE)


def __getattr__(name: str):
    if name not in WHERE:
        raise AttributeError(f"module 'compressor.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"compressor.data.{WHERE[name]}"), name)
