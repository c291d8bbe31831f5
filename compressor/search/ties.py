"""Ties go to the simpler file (issue 43). Two files whose speed-ups differ by less than the timing
noise are a coin toss (two copies of one network time apart side by side: docs/search.md). The
fastest by median wins unless another's spread over its rounds (the middle half: `spread`) overlaps
its own: that is a tie within timing noise, and it goes to the smaller file, then to the one with fewer stages.

The rounds are the latency table's (compressor/search/latency.py: each file's speed-up over the
baseline, round by round, measured once per machine), so the decision is the same on every run. The
contenders are still timed again here, side by side in interleaved rounds, to check the table and to
report (`check` in search.json's `timing`); without table rounds (a caller's own rows), that timing
decides, as before."""

import statistics
from pathlib import Path

from compressor import measure

CLOSE = 0.8  # a contender has at least this fraction of the best gain
MOST = 4  # contenders re-timed, at most
ROUNDS = 5  # interleaved rounds: the spread is the min..max over them
BATCH = {"speedup_b1": 1, "speedup_b64": 64}  # the batch an objective times (and a static-shape file is compiled for)


def timed(contenders: list[dict], batch: int, threads: int = 1) -> dict:
    """{index: ms per image in each round} of the contenders' files, side by side here."""
    from compressor.runtimes.deploy import example, load

    files = {i: load(c) for i, c in enumerate(contenders)}
    return measure.rounds(files, example(Path(contenders[0]["path"]).parent), batch, threads, count=ROUNDS)


def spread(rounds: list[float]) -> tuple[float, float]:
    """A file's timing noise over its rounds: their interquartile range. Their whole range, on a loaded
    machine's 15 rounds, tied files far apart by median (docs/search.md)."""
    if len(rounds) < 4:
        return min(rounds), max(rounds)
    q1, _, q3 = statistics.quantiles(rounds, n=4)
    return q1, q3


def settle(within: list[dict], gain: str, threads: int = 1, timer=timed) -> tuple[dict | None, dict | None]:
    """The file to ship among `within` (the files within the budget), and what the re-timing found
    (None when nothing was close: size is exact, and one contender is no contest)."""
    ranked = sorted(within, key=lambda r: (-r[gain], -r["val/acc"]))
    if not ranked:
        return None, None
    contenders = [r for r in ranked if r[gain] >= CLOSE * ranked[0][gain]][:MOST]
    if gain not in BATCH or len(contenders) < 2:
        return ranked[0], None
    check = timer(contenders, BATCH[gain], threads)
    tabled = all(c.get(f"{gain}_rounds") for c in contenders)
    # ms per image in each round: the table's (the baseline's time over each round's speed-up), else the check's
    ms = {i: [1.0 / s for s in c[f"{gain}_rounds"]] for i, c in enumerate(contenders)} if tabled else check
    fastest = min(ms, key=lambda i: statistics.median(ms[i]))
    lo, hi = spread(ms[fastest])
    tied = [i for i in ms if spread(ms[i])[0] <= hi and lo <= spread(ms[i])[1]]
    pick = min(tied, key=lambda i: (contenders[i]["size_mb"], contenders[i]["stages"], i))
    timing = [
        {
            "file": contenders[i]["path"],
            "static_shape": contenders[i].get("static_shape", False),
            "recipe": contenders[i]["recipe"],
            "tied": i in tied,
            **(
                {"rounds_speedup": contenders[i][f"{gain}_rounds"]}
                if tabled
                else {"rounds_ms": ms[i], "median_ms": statistics.median(ms[i])}
            ),
        }
        for i in ms
    ]  # an OpenVINO file timed twice: compiled static and dynamic
    out = {
        "batch": BATCH[gain],
        "timed": timing,
        "tie": len(tied) > 1,
        "from": "latency table" if tabled else "side by side",
        "fastest": contenders[fastest]["path"],
        "tied": [contenders[i]["path"] for i in tied],
    }
    if tabled:  # the side-by-side check: its fastest by median, and whether it agrees with the table's
        out["check"] = {
            "rounds_ms": {
                contenders[i]["path"] + (" static" if contenders[i].get("static_shape") else ""): check[i]
                for i in check
            },
            "fastest_agrees": min(check, key=lambda i: statistics.median(check[i])) in tied,
        }
    return contenders[pick], out
