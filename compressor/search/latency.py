"""The latency figure the search decides on: the same on every run on the same machine (issue 55).

A trial times its files beside the baseline in its own process, under whatever load the machine has
then, and which file shipped followed the load (docs/search.md). So what the search samples, promotes and ranks is read from a table instead: each file's
speed-up over the baseline's file at the objective's batch size, measured once per machine under a
fixed protocol and kept in the cache (`paths.cache_dir/latency/<machine>/`, one JSON entry per file,
written whole), the way latency lookup tables serve once-for-all and ProxylessNAS.

- **The key** is the file's content (an exported file's bytes, OpenVINO's .bin included and its
  .xml without the names it numbers per process; a safetensors artifact's tensors and architecture,
  not its training history), its runtime and input
  shape, the baseline's content, the batch, the thread count, and the machine: its CPU model and core
  count, torch's version and the candidate runtime's. The same file from another trial, or
  another search, is one entry.
- **The protocol**: the file and the baseline alternate in interleaved rounds (measure.rounds: warm-up,
  then `reps` calls each per round, threads pinned); the figure is the median over rounds of the
  baseline's time over the file's. At least MIN_ROUNDS rounds; more, one at a time, until adding one
  moves the median by under STABLE, at most MAX_ROUNDS. A ratio of two files timed in the same
  rounds cancels most of a load both see; the rounds' spread is kept for ties (compressor/search/ties.py).

A later run, a rerun, or a search beside other jobs reads the same figures, so it takes the same
decisions; delete the folder to measure again. The files the verdict compares are still timed side
by side at the end, to check the table and to report (`timing` in search.json)."""

import hashlib
import json
import os
import re
import statistics
import struct
from functools import lru_cache
from pathlib import Path

from compressor.storage import cache

MIN_ROUNDS, MAX_ROUNDS, STABLE = 5, 15, 0.02
BATCH = {"speedup_b1": 1, "speedup_b64": 64}


@lru_cache(maxsize=1)
def machine() -> str:
    """This machine as far as latency goes: CPU model, cores and torch's version (each entry's key
    holds its own runtime's version)."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown")
    text = json.dumps([cpu, os.cpu_count(), f"torch {torch.__version__}"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def content(path) -> str:
    """sha256 of what a file computes with: its bytes (an OpenVINO .xml with its .bin); for a
    safetensors artifact its tensors and manifest without the training history, which differs
    between two fits to the same weights (their seconds). Read once per file version: every
    candidate's key holds the baseline's too."""
    path = Path(path)
    files = [
        path,
        *([path.with_suffix(".bin")] if path.suffix == ".xml" and path.with_suffix(".bin").is_file() else []),
    ]
    return _content(str(path), tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files))


@lru_cache(maxsize=256)
def _content(name: str, versions: tuple) -> str:
    path, h = Path(name), hashlib.sha256()
    if path.suffix == ".safetensors":
        data = path.read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + n])
        meta = header.pop("__metadata__", {})
        manifest = json.loads(meta.get("manifest", "{}"))
        manifest.pop("history", None)
        h.update(
            json.dumps([header, manifest, {k: v for k, v in meta.items() if k != "manifest"}], sort_keys=True).encode()
        )
        h.update(data[8 + n :])
        return h.hexdigest()
    data = path.read_bytes()
    if path.suffix == ".xml":  # OpenVINO names its graph and layers from a per-process counter: not what it computes
        data = re.sub(rb'\sname="[^"]*"', b"", data)
        if path.with_suffix(".bin").is_file():
            data += path.with_suffix(".bin").read_bytes()
    h.update(data)
    return h.hexdigest()


def key(candidate: dict, reference: dict, batch: int, threads: int) -> str:
    from compressor import runtimes

    name = candidate["runtime"]
    parts = [
        content(candidate["path"]),
        name,
        name if name == "torch" else runtimes.get(name).version(),
        bool(candidate.get("static_shape")),
        content(reference["path"]),
        reference["runtime"],
        batch,
        threads,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def measured(candidate: dict, reference: dict, batch: int, threads: int, timer) -> dict:
    """The protocol: interleaved rounds until the median ratio is stable (see the module's docstring)."""
    ratios: list[float] = []
    ms: list[float] = []
    while len(ratios) < MAX_ROUNDS:
        before = statistics.median(ratios) if ratios else None
        rounds = timer([reference, candidate], batch, threads, MIN_ROUNDS if not ratios else 1)
        ratios += [b / f for b, f in zip(rounds[0], rounds[1])]
        ms += list(rounds[1])
        if before is not None and abs(statistics.median(ratios) - before) <= STABLE * before:
            break
    return {
        "speedup": statistics.median(ratios),
        "rounds": ratios,
        "ms": statistics.median(ms),
        "batch": batch,
        "threads": threads,
    }


def timed(files: list[dict], batch: int, threads: int, count: int) -> dict:
    """{index: ms per image in each of `count` interleaved rounds}, here (the protocol's timer)."""
    from compressor import measure
    from compressor.runtimes.deploy import example, load

    models = {i: load(f) for i, f in enumerate(files)}
    return measure.rounds(models, example(Path(files[-1]["path"]).parent), batch, threads, count=count)


def figure(candidate: dict, reference: dict, gain: str, threads: int, cache_dir, timer=timed) -> dict:
    """The table's entry for `candidate` against `reference` (the baseline's file) at `gain`'s batch:
    read, or measured once under the protocol and stored."""
    batch = BATCH[gain]
    folder = Path(cache_dir) / "latency" / machine()
    entry = folder / f"{key(candidate, reference, batch, threads)}.json"
    if entry.is_file():
        return json.loads(entry.read_text())
    with cache.locked(folder / f"{entry.stem}.lock"):
        if entry.is_file():  # measured by a job that held the lock first
            return json.loads(entry.read_text())
        out = measured(candidate, reference, batch, threads, timer)
        tmp = entry.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, entry)
        return out


def tabled(candidates: list[dict], reference: dict, gain: str, threads: int, cache_dir, timer=timed) -> None:
    """Each candidate's `gain` becomes the table's figure (its trial's own is kept as `<gain>_trial`),
    with the rounds' spread (`<gain>_rounds`)."""
    if gain not in BATCH:
        return
    for c in candidates:
        found = figure(c, reference, gain, threads, cache_dir, timer)
        c[f"{gain}_trial"], c[gain], c[f"{gain}_rounds"] = c[gain], found["speedup"], found["rounds"]
