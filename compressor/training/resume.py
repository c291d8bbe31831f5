"""What lets a killed, interrupted or preempted fit continue where it stopped.

Each fit writes `last.ckpt` at the end of every epoch into a folder named by what the fit is (a
baseline's cache key, or a job's config hash and the stage's place in it), never by the process.
Rerun with the same config, the fit finds that file and Lightning resumes from it (`ckpt_path`):
weights, optimizer, schedule, loop counters, callback state and, through `RngState`, the random
generators, so the result equals an uninterrupted run's on the same machine and thread count.
Files are written to a temporary name and renamed, so a kill mid-save leaves the previous one.
SLURM's requeue signal saves an `hpc_ckpt_N.ckpt` in the same folder (Lightning's own handler),
and submitit requeues a preempted job with the same config, which resumes the same way."""

import logging
import os
import random
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger("compressor")
LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save, into `<file>.tmp` renamed over `<file>`: a checkpoint is whole or absent."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class RngState(L.Callback):
    """The python, numpy and torch generators in every checkpoint, restored on resume (Lightning
    saves the loops' counters, not the generators, and dropout draws from torch's)."""

    def state_dict(self):
        version, internal, gauss_next = random.getstate()
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": list(internal),
            "python_version": version,
            "python_gauss": gauss_next,
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state):
        random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])


def point(folder: Path) -> Path | None:
    """The newest whole checkpoint a fit left in `folder` (last.ckpt, or a SLURM hpc_ckpt_N.ckpt)."""
    if folder is None or not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.name == LAST or re.fullmatch(r"hpc_ckpt_\d+\.ckpt", p.name)]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def held(folder: Path | None) -> int:
    """How many epochs the newest whole checkpoint in `folder` holds (0: none, or unreadable)."""
    path = point(folder)
    return (epochs_done(path) or 0) if path is not None else 0


def finished(folder: Path | None, epochs: int) -> bool:
    """Whether resuming from `folder` trains nothing: its checkpoint already holds `epochs` epochs
    (a stage reused from a shared pipeline prefix)."""
    return held(folder) >= epochs


def epochs_done(path: Path) -> int | None:
    """How many epochs the checkpoint holds, or None when it cannot be read (it is then removed)."""
    try:
        # mmap: only the header is read here; Lightning reads the tensors once, when it resumes
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception as exc:  # a checkpoint of another version, or damaged by hand
        log.warning("%s cannot be resumed from (%s): removed, the fit starts over", path, type(exc).__name__)
        path.unlink(missing_ok=True)
        return None
