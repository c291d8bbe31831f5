"""What the cache key knows of the data, so a baseline trained on one data set is never reused
for another (docs/techniques.md: Baseline and the cache). The rule, by what a datamodule holds:

- `fingerprint()`: a datamodule that defines it (any string) is keyed by it; compressor's own
  datamodules define it from their splits, with the rules below.
- tensors (digits, mnist5k, MNIST, Fashion-MNIST, CIFAR-10): their bytes (sha256).
- image folders (`datasets.ImageFolder`): every file's path within the folder, class, size and
  modification time (not the folder's own path: a copy kept with its times is the same data).
- `Subset`s and `ConcatDataset`s of those: their indices and their parts.
- anything else: not fingerprintable. The key then holds the dataset config and the working
  folder, so the entry is never shared with a job started elsewhere, and the log says so once."""
import hashlib
import logging
import os
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Subset, TensorDataset
from torchvision.datasets import DatasetFolder

log = logging.getLogger("compressor")


def _feed(h, ds, seen: dict) -> bool:
    """Hash `ds` into `h`; False when some part of it cannot be fingerprinted."""
    if isinstance(ds, Subset):
        h.update(b"subset")
        h.update(torch.as_tensor(list(ds.indices), dtype=torch.int64).numpy().tobytes())
        return _feed(h, ds.dataset, seen)
    if isinstance(ds, ConcatDataset):
        return all(_feed(h, part, seen) for part in ds.datasets)
    if id(ds) in seen:  # train and val are often two Subsets of one data set: its bytes are hashed once
        h.update(f"same as part {seen[id(ds)]}".encode())
        return True
    seen[id(ds)] = len(seen)
    if isinstance(ds, TensorDataset):
        for t in ds.tensors:
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return True
    if isinstance(ds, DatasetFolder):
        for path, target in ds.samples:
            st = os.stat(path)
            h.update(f"{os.path.relpath(path, ds.root)}\0{target}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return True
    return False


def of_splits(*datasets) -> str | None:
    """sha256 of the train, val and test sets, or None when one of them is of an unknown kind."""
    h, seen = hashlib.sha256(), {}
    for ds in datasets:
        if ds is None or not _feed(h, ds, seen):
            return None
        h.update(b"|")
    return h.hexdigest()[:20]


def of(dm, dataset_cfg) -> dict:
    """The data's part of a cache key and of a job's identity."""
    own = getattr(dm, "fingerprint", None)
    value = own() if callable(own) else own
    if value is None:  # a user's datamodule: try the usual attribute names
        value = of_splits(*(getattr(dm, a, None) for a in ("train_set", "val_set", "test_set")))
    if value is not None:
        return {"data": str(value)}
    log.warning("dataset %s: its data cannot be fingerprinted (define fingerprint() on the datamodule); the "
                "baseline's cache entry is keyed by its config and this folder (%s) only, so a change in its "
                "files is not seen", dataset_cfg.get("name"), Path.cwd())
    return {"data": None, "folder": str(Path.cwd())}
