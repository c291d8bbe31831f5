"""A budget certified at a stated confidence (`budget.confidence`, issue 55).

The validation images are split in two by a fixed seed: the *selection* half, on which searches
choose (recipes, promotions, the frontier, the order below), and the *certification* half, which no
choice reads. The baseline's best epoch was chosen on all of them; that favours the baseline on the
certification half, so it can only make a drop look larger, never smaller.

**The bound.** On n certification images, pair the baseline's answer with the candidate's: `worse`
images the baseline gets right and the candidate wrong, `better` the reverse. The drop is
(worse - better) / n. Its one-sided upper bound at confidence 1 - delta is exact and needs no
normal approximation: the share of discordant images is at most pi_u (Clopper-Pearson, delta/2), the
share of them the candidate loses at most q_u (Clopper-Pearson given the discordant count, delta/2),
so the drop pi (2q - 1) is at most pi_u * max(0, 2 q_u - 1) with probability at least 1 - delta.
Concordant images cost it nothing, which a bound on the raw differences (Hoeffding, Bentkus) would
pay for (docs/budget.md gives its coverage and power, measured).

**Many candidates.** Testing each of many files at level delta and shipping the best that passes
would not hold at delta. Candidates are therefore tested in a fixed order, the one Pareto Testing
uses (Laufer-Goldshtein et al., ICLR 2023): the selection half's frontier from its most accurate file
to its fastest. Plain fixed-sequence testing stops at the first failure, and the most accurate file
on the selection half is also its luckiest: one that fails blocks every other (docs/search.md,
measured). So the sequence uses the fallback procedure (Wiens 2003): each file gets an equal share
of delta, plus the level of the file before it when that one passed; a failure spends only its own
share. Every file passed is within the budget,
all of them together, with probability at least 1 - delta (the family-wise error is controlled).

**Every figure can be recomputed**: each run keeps its files' answers, a bit per image, in
correct.json (`pack`/`unpack`)."""

import base64
from functools import lru_cache
from pathlib import Path

import torch

SEED = 20261207  # the split of the validation images: fixed, so every run, trial and search agrees on it


def halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(selection, certification) indices of n validation images: a seeded half each."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED))
    return order[: n - n // 2].sort().values, order[n - n // 2 :].sort().values


def pack(correct: torch.Tensor) -> str:
    """A bool per image as base64 bits (what correct.json holds)."""
    import numpy as np

    return base64.b64encode(np.packbits(correct.cpu().numpy().astype(bool)).tobytes()).decode()


def unpack(text: str, n: int) -> torch.Tensor:
    import numpy as np

    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool))


def answers(baseline: dict, files: dict) -> dict:
    """correct.json: which images the baseline and each file get right, per split (None: that file
    was not run on that split), base64 bits in the loader's order."""

    def packed(split: dict) -> dict:
        return {name: None if bits is None else pack(bits) for name, bits in split.items()}

    return {
        "images": {split: len(bits) for split, bits in baseline.items() if bits is not None},
        "selection_seed": SEED,
        "baseline": packed(baseline),
        "files": {label: packed(splits) for label, splits in files.items()},
    }


def read(run_dir, label: str) -> tuple[dict, dict] | None:
    """(the baseline's, the file's) bits per split from a run's correct.json; None where the run has
    none (a run from before issue 55) or the file is not in it."""
    path = Path(run_dir) / "correct.json"
    if not path.is_file():
        return None
    data = _read(str(path), path.stat().st_mtime_ns)
    if label not in data["files"]:
        return None
    n = data["images"]

    def bits(split: dict) -> dict:
        return {s: unpack(v, n[s]) for s, v in split.items() if v is not None and s in n}

    return bits(data["baseline"]), bits(data["files"][label])


@lru_cache(maxsize=32)
def _read(name: str, mtime_ns: int) -> dict:
    """A correct.json, parsed once per version (a trial's candidates all read the same file)."""
    import json

    return json.loads(Path(name).read_text())


def upper(k: int, n: int, delta: float) -> float:
    """Clopper-Pearson's one-sided upper bound on a proportion seen k times in n: the p at which
    seeing k or fewer has probability delta (1 when k == n, or when n == 0)."""
    from scipy.stats import beta

    if n == 0 or k >= n:
        return 1.0
    return float(beta.ppf(1 - delta, k + 1, n - k))


def bound(worse: int, better: int, n: int, confidence: float) -> float:
    """The drop's upper bound in points (see the module's docstring)."""
    delta = 1 - confidence
    discordant = worse + better
    pi_u = upper(discordant, n, delta / 2)
    q_u = upper(worse, discordant, delta / 2) if discordant else 1.0
    return 100 * pi_u * max(0.0, 2 * q_u - 1)


def paired(reference: torch.Tensor, candidate: torch.Tensor, confidence: float) -> dict:
    """The candidate's drop against the reference on the same images, and its bound."""
    reference, candidate = reference.bool(), candidate.bool()
    n = len(reference)
    worse = int((reference & ~candidate).sum())
    better = int((candidate & ~reference).sum())
    return {
        "images": n,
        "worse": worse,
        "better": better,
        "drop": 100 * (worse - better) / max(n, 1),
        "bound": bound(worse, better, n, confidence),
        "confidence": confidence,
    }


def images_needed(test: dict, max_drop: float, limit: int = 10_000_000) -> int | None:
    """About how many certification images would certify a candidate with the same rates of images
    lost and gained; None where its drop itself is over the budget (no number would)."""
    n, confidence = test["images"], test["confidence"]
    if not n or test["drop"] >= max_drop:
        return None

    def passes(m: int) -> bool:
        return bound(round(test["worse"] * m / n), round(test["better"] * m / n), m, confidence) <= max_drop

    hi = max(n, 16)
    while not passes(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > max(1, hi // 100):  # to 1%
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi


def in_sequence(candidates: list[dict], test, max_drop: float, confidence: float) -> tuple[list[dict], list[dict]]:
    """The fallback procedure (Wiens 2003), fixed-sequence testing that a failure does not end:
    `candidates` in their given order (most accurate first), each given an equal share of
    delta = 1 - confidence; a candidate is tested at its share plus the level of the one before it
    when that one passed (`test(candidate, its confidence)` -> a `paired` dict). All passed are within
    max_drop together with probability at least `confidence`. Returns (passed, failed), in order; each
    candidate keeps its test as `certify` and the verdict as `certified`."""
    share, carried = (1 - confidence) / max(len(candidates), 1), 0.0
    passed, failed = [], []
    for c in candidates:
        level = carried + share
        c["certify"] = test(c, 1 - level)
        c["certified"] = c["certify"]["bound"] <= max_drop
        (passed if c["certified"] else failed).append(c)
        carried = level if c["certified"] else 0.0
    return passed, failed


def phrase(result: dict) -> str:
    """e.g. `-0.41 pts on the certification split (2,500 images), a drop of at most 0.93 with 99% confidence`
    (the confidence the file was tested at: its share of the sequence's)."""
    return (
        f"{-result['drop']:+.2f} pts on the certification split ({result['images']:,} images), a drop of at "
        f"most {result['bound']:.2f} with {100 * result['confidence']:.3g}% confidence"
    )
