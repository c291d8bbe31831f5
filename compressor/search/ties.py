"""Ties go to the simpler file (issue 43). The trials time each file beside the baseline in their own
process; two files from different trials whose speed-ups differ by less than the timing noise are a
coin toss (two copies of one ~0.04 ms network timed 0.86-1.06x apart side by side). So the files
within the budget whose gain is close to the best are timed again here, side by side in interleaved
rounds. The fastest by median wins unless another's spread over the rounds overlaps its own: that is
a tie within timing noise, and it goes to the smaller file, then to the one with fewer stages."""
import statistics
from pathlib import Path

from compressor import measure

CLOSE = 0.8   # a contender has at least this fraction of the best gain
MOST = 4      # contenders re-timed, at most
ROUNDS = 5    # interleaved rounds: the spread is the min..max over them
BATCH = {"speedup_b1": 1, "speedup_b64": 64}  # the batch an objective times (and a static-shape file is compiled for)


def timed(contenders: list[dict], batch: int, threads: int = 1) -> dict:
    """{index: ms per image in each round} of the contenders' files, side by side here."""
    from compressor.runtimes.deploy import example, load

    files = {i: load(c) for i, c in enumerate(contenders)}
    return measure.rounds(files, example(Path(contenders[0]["path"]).parent), batch, threads, count=ROUNDS)


def settle(within: list[dict], gain: str, threads: int = 1, timer=timed) -> tuple[dict | None, dict | None]:
    """The file to ship among `within` (the files within the budget), and what the re-timing found
    (None when nothing was close: size is exact, and one contender is no contest)."""
    ranked = sorted(within, key=lambda r: (-r[gain], -r["val/acc"]))
    if not ranked:
        return None, None
    contenders = [r for r in ranked if r[gain] >= CLOSE * ranked[0][gain]][:MOST]
    if gain not in BATCH or len(contenders) < 2:
        return ranked[0], None
    ms = timer(contenders, BATCH[gain], threads)
    fastest = min(ms, key=lambda i: statistics.median(ms[i]))
    lo, hi = min(ms[fastest]), max(ms[fastest])
    tied = [i for i in ms if min(ms[i]) <= hi and lo <= max(ms[i])]
    pick = min(tied, key=lambda i: (contenders[i]["size_mb"], contenders[i]["stages"], i))
    timing = [{"file": contenders[i]["path"], "static_shape": contenders[i].get("static_shape", False),
               "recipe": contenders[i]["recipe"], "rounds_ms": ms[i], "median_ms": statistics.median(ms[i]),
               "tied": i in tied} for i in ms]  # an OpenVINO file timed twice: compiled static and dynamic
    return contenders[pick], {"batch": BATCH[gain], "timed": timing, "tie": len(tied) > 1,
                              "fastest": contenders[fastest]["path"], "tied": [contenders[i]["path"] for i in tied]}
