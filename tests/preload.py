"""What the command-line tests' fork server imports once (tests/forked.py): what a run of run.py
imports before its first epoch, so that each forked command starts with it."""

import warnings

FRESH_FILTERS = list(warnings.filters)  # a new interpreter's, before any import adds its own

import importlib  # noqa: E402
import pkgutil  # noqa: E402

import hydra  # noqa: F401,E402
import lightning.pytorch  # noqa: F401,E402
import torch  # noqa: F401,E402
import torchvision  # noqa: F401,E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: F401,E402

import compressor  # noqa: E402

for module in pkgutil.walk_packages(compressor.__path__, "compressor."):  # compressor.cli and .job among them
    importlib.import_module(module.name)
