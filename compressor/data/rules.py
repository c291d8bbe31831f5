"""The dataset keys' rules, torch-free: checked with every other key before torch loads
(compressor.validate), and by a datamodule built by hand (compressor.data.base)."""
from omegaconf import DictConfig

from compressor.errors import ConfigError
from compressor.settings import apply, boolean, integer, number, numbers, text

DATASET = {
    "name": text(), "in_channels": integer(1), "image_size": integer(1), "num_classes": integer(2),
    "mean": numbers(), "std": numbers(positive=True), "batch_size": integer(1), "num_workers": integer(0),
    "val_fraction": number(gt=0, lt=1), "test_fraction": number(gt=0, lt=1), "seed": integer(0, 2**32 - 1),
    "train_size": integer(1, optional=True), "data_dir": text(optional=True), "extract_dir": text(), "download": boolean(), "skip_bad_images": boolean(), "datamodule._target_": text(),
}


def dataset(d) -> None:
    """The dataset keys (a config or a datamodule's arguments): each key's rule, then the joint ones."""
    apply(d, DATASET, "dataset.", required=("in_channels", "image_size", "num_classes") if isinstance(d, DictConfig) else ())
    if "val_fraction" in d and "test_fraction" in d and d["val_fraction"] + d["test_fraction"] >= 1:
        raise ConfigError(f"dataset.val_fraction + dataset.test_fraction = {d['val_fraction'] + d['test_fraction']}: "
                          "must be < 1")
    for key in ("mean", "std"):
        if key in d and "in_channels" in d and len(d[key]) not in (1, d["in_channels"]):
            raise ConfigError(f"dataset.{key} has {len(d[key])} values: give 1 or dataset.in_channels={d['in_channels']}")
