"""Content-addressed store of trained baselines and teachers under outputs/cache/.

The key hashes everything that determines the trained weights (dataset, architecture, training
recipe, seed). A file lock makes concurrent jobs train an entry once; the entry is built in a
temporary folder and renamed into place, so no job reads half a file; a checksum in meta.json
catches a corrupt entry, which is rebuilt, never used."""
import fcntl
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from compressor.artifact import FILENAME as MODEL

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


@contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
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
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def fetch_or_build(root, spec: dict, build) -> tuple[Path, dict, bool]:
    """(entry folder, record, built now?). `build(folder)` writes folder/MODEL and returns a record.

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
    with locked(root / f"{k}.lock"):
        meta = valid(entry)
        if meta is not None:
            log.debug("cache hit %s: reusing the trained %s", k, spec.get("model", {}).get("name", "model"))
            return entry, meta["record"], False
        if entry.exists():
            log.warning("cache entry %s is corrupt or incomplete: rebuilding it", entry)
            shutil.rmtree(entry)
        tmp = root / f"{k}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            record = build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta = {"key": k, "spec": spec, "sha256": sha256(tmp / MODEL), "record": record}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, entry)
        log.info("cache store %s", entry)
        return entry, record, True
