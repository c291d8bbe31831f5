"""A dataset the user brings as any LightningDataModule (`dataset=datamodule`).

The config holds the numbers the models are built for (in_channels, image_size, num_classes);
the datamodule must yield (image, label) batches from train/val/test dataloaders and expose
num_classes. Where it also exposes in_channels or image_size, they must agree with the config."""
from hydra.utils import instantiate

from compressor.errors import ConfigError


def build(dataset):
    """The datamodule of a dataset config, prepared and set up for fit and test."""
    if "datamodule" not in dataset:
        dm = instantiate(dataset)
    else:
        dm = instantiate(dataset.datamodule)
        for attr in ("num_classes", "in_channels", "image_size"):
            if not hasattr(dm, attr):
                if attr == "num_classes":
                    raise ConfigError(f"dataset.datamodule._target_={dataset.datamodule._target_}: the datamodule "
                                      f"has no num_classes attribute; compressor needs it to build the classifier")
                continue
            if getattr(dm, attr) != dataset[attr]:
                raise ConfigError(f"dataset.{attr}={dataset[attr]}: the datamodule "
                                  f"{dataset.datamodule._target_} has {attr}={getattr(dm, attr)}")
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    return dm
