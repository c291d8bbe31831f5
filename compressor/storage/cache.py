"""Content-addressed store of trained baselines and teachers under outputs/cache/.

The key hashes everything that determines the trained weights (dataset, architecture, training
recipe, seed) and the data themselves (compressor/data/fingerprint.py). A file lock makes
concurrent jobs train an entry once; the entry is built in `<key>.partial/`, named by the key
and not by the process, so a build killed midway is resumed from its last checkpoint by the
next job that needs it, then renamed into place, so no job reads half a file; a checksum in
meta.json catches a corrupt entry, which is rebuilt, never used. A build whose model is broken
(`keep(record)` false: chance accuracy) is handed back unstored."""

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from compressor.errors import Interrupted
from compressor.storage.artifact import FILENAME as MODEL

log = logging.getLogger(__name__)
VERSION = 2  # 2: entries hold model.safetensors (version-1 entries held a pickled model.pt)


def key(spec: dict) -> str:
    return hashlib.sha256(json.dumps({"v": VERSION, **spec}, sort_keys=True, default=str).encode()).hexdigest()[:20]


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Waited(TimeoutError):
    """A lock still held by another process after the wait allowed."""


@contextmanager
def locked(path: Path, wait_s: float | None = None):
    """`path`'s exclusive lock, held inside the block; with `wait_s`, Waited when another process
    still holds it after that many seconds (a DDP rank must not wait longer than its peers do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        if wait_s is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Waited(f"the lock {path}, held by another job") from None
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def valid(entry: Path) -> dict | None:
    """The entry's meta.json when the entry is whole and its model matches its checksum."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if sha256(entry / MODEL) == meta["sha256"]:
            return meta
    except (OSError, ValueError, KeyError):
        pass
    return None


def rank() -> int:
    """This process's DDP rank before Lightning sets RANK: under SLURM with several tasks (Lightning's
    SLURM environment) each task is a rank from the start, SLURM_PROCID; without it both tasks took the
    cache's lock as rank 0 and deadlocked in the fit's first barrier."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", os.environ.get("SLURM_PROCID", 0))))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphans(root: Path, k: str) -> None:
    """Temp folders of this key left by processes that died (`<key>.tmp-<pid>` of earlier releases,
    `<key>.rank<r>-<pid>` of DDP ranks): removed, with one line each."""
    for folder in root.glob(f"{k}.*-*"):
        m = re.fullmatch(rf"{k}\.(?:tmp|rank\d+)-(\d+)", folder.name)
        if m and folder.is_dir() and not alive(int(m.group(1))):
            log.info("cache: removing %s, left by a process that no longer runs", folder)
            shutil.rmtree(folder, ignore_errors=True)


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def fetch_or_build(
    root, spec: dict, build, keep=lambda record: True, wait_s: float | None = None
) -> tuple[Path, dict, bool]:
    """(entry folder, record, built now?). `build(folder)` writes folder/MODEL and returns a record.
    A record that `keep` refuses is not stored: its folder is returned, for the caller to read
    and then `discard`. `wait_s` bounds the wait for the lock (Waited after it).

    Under DDP every rank must take part in the training fit, and rank 0 holds the lock while it
    waits for the others, so ranks > 0 never lock: they reuse a whole entry, or join the fit in a
    private folder that is never stored. Only rank 0 writes the cache."""
    root = Path(root)
    k = key(spec)
    entry = root / k
    if rank() != 0:
        meta = valid(entry)
        if meta is not None:
            return entry, meta["record"], False
        private = root / f"{k}.rank{rank()}-{os.getpid()}"
        shutil.rmtree(private, ignore_errors=True)
        private.mkdir(parents=True)
        return private, build(private), True
    with locked(root / f"{k}.lock", wait_s):
        meta = valid(entry)
        if meta is not None:
            log.debug("cache hit %s: reusing the trained %s", k, spec.get("model", {}).get("name", "model"))
            return entry, meta["record"], False
        if entry.exists():
            log.warning("cache entry %s is corrupt or incomplete: rebuilding it", entry)
            shutil.rmtree(entry)
        remove_orphans(root, k)
        tmp = root / f"{k}.partial"  # under the lock: a folder here is a killed build's, resumed from
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            record = build(tmp)
        except (KeyboardInterrupt, Interrupted, SystemExit):
            # the last checkpoint stays for the next job to resume from (SystemExit: submitit requeued
            # this SLURM job at its time limit, and the next attempt resumes)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not keep(record):
            return tmp, record, True
        meta = {"key": k, "spec": spec, "sha256": sha256(tmp / MODEL), "record": record}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, entry)
        log.info("cache store %s", entry)
        return entry, record, True
