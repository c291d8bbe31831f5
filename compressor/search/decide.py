"""What the search ships, from the files of its full-recipe trials (compressor/search/frontier.py
runs them): the frontier, the certified files on it (compressor/certify.py), the tie among the close
ones (compressor/search/ties.py), the test set read for the frontier and the chosen file alone, and
the one-line verdict."""

from pathlib import Path

from compressor import certify
from compressor.search import ties
from compressor.search.records import certification, tested


def pareto(rows: list[dict], gain: str) -> list[dict]:
    """The rows no other row beats on validation accuracy, gain, size and number of stages at once (at
    least as good on all, better on one). Size and stages count because a tie in speed goes to the
    smaller file, then to fewer stages: the file shipped is always one of these, the frontier
    frontier.csv reports."""

    def key(p):
        return p["val/acc"], p[gain], -p["size_mb"], -p.get("stages", 0)

    def dominated(p):
        return any(all(a >= b for a, b in zip(key(q), key(p))) and key(q) != key(p) for q in rows)

    return sorted((p for p in rows if not dominated(p)), key=lambda p: -p[gain])


def certified(front: list[dict], max_drop: float, confidence: float, test=certification) -> tuple[list[dict], dict]:
    """The frontier's files within the budget on the selection half, tested in a fixed order (most
    accurate first, as Pareto Testing orders them) on the certification half, by the fallback
    procedure (compressor/certify.py): the files certified together at `confidence`, and a report."""
    sequence = sorted((r for r in front if r["val_drop"] <= max_drop), key=lambda r: (r["val_drop"], -r["val/acc"]))

    def tested(r, level):
        if r.get("certifiable", True):
            return test(r, level)
        return {"images": 0, "worse": 0, "better": 0, "drop": float("nan"), "bound": float("inf"), "confidence": level}

    passed, failed = certify.in_sequence(sequence, tested, max_drop, confidence)
    first = failed[0] if failed and not passed else None  # what the line says when nothing is certified
    report = {
        "confidence": confidence,
        "tested": len(sequence),
        "certified": len(passed),
        "failed": [{"recipe": r["recipe"], "file": r["file"], "runtime": r["runtime"], **r["certify"]} for r in failed],
        "first": None
        if first is None
        else {
            "recipe": first["recipe"],
            "file": first["file"],
            "runtime": first["runtime"],
            **first["certify"],
            "images_needed": certify.images_needed(first["certify"], max_drop),
        },
    }
    return passed, report


def decide(
    rows: list[dict],
    gain: str,
    max_drop: float,
    reference: dict,
    s,
    threads: int = 1,
    timer=ties.timed,
    tester=tested,
    confidence: float | None = None,
    test=certification,
) -> dict:
    """The frontier, the chosen file, and the one-line verdict (test accuracy read here, once). The
    chosen file is on the frontier, the one frontier.csv reports: with `confidence`, the frontier's
    files certified within the budget (`certified`), else those within it on validation; ties among
    the close ones are settled by compressor/search/ties.py."""
    front = pareto(rows, gain)
    within, sequence = [r for r in front if r["val_drop"] <= max_drop], None
    if confidence is not None:
        within, sequence = certified(front, max_drop, confidence, test)
    chosen, timing = ties.settle(within, gain, threads, timer)
    b = reference["baseline"]
    # the only files the test set is read for
    tested_now = tester([*front, *([chosen] if chosen else [])], b["test/acc"])
    per = {"speedup_b1": "faster at batch 1", "speedup_b64": "faster at batch 64", "smaller": "smaller on disk"}
    if chosen:
        held = chosen["test_drop"] <= max_drop
        how = (
            f", compiled for a fixed batch of {ties.BATCH[gain]}"
            if chosen.get("static_shape") and gain != "smaller"
            else ""
        )
        budget = (
            (
                f"budget {max_drop:g} pts certified at {100 * confidence:g}% confidence, {sequence['certified']} of "
                f"{sequence['tested']} frontier files together: {certify.phrase(chosen['certify'])}; "
                f"{'held' if held else 'NOT held'} on test"
            )
            if sequence
            else f"budget {max_drop:g} pts {'held' if held else 'NOT held'} on test"
        )
        verdict = (
            f"search: ship {chosen['file']} on {chosen['runtime']}{how} ({chosen['recipe']}): "
            f"{chosen[gain]:.2f}x {per[gain]} than the baseline, {chosen['smaller']:.1f}x smaller, "
            f"{-chosen['val_drop']:+.2f} pts on the selection split, {-chosen['test_drop']:+.2f} on test "
            f"({budget}); copied to ship/"
        )
        if timing and timing["tie"]:
            spread = ", ".join(
                f"{Path(t['file']).parent.name}/{Path(t['file']).name}{' static' * t['static_shape']} "
                + (
                    "{:.2f}-{:.2f}x".format(*ties.spread(t["rounds_speedup"]))
                    if "rounds_speedup" in t
                    else "{:.4f}-{:.4f} ms".format(*ties.spread(t["rounds_ms"]))
                )
                for t in timing["timed"]
                if t["tied"]
            )
            rounds = (
                "the latency table's rounds"
                if timing["from"] == "latency table"
                else f"{ties.ROUNDS} interleaved rounds"
            )
            verdict += f". Tie within timing noise ({spread}, {rounds}): the smaller file"
    elif sequence and sequence["first"]:
        f = sequence["first"]
        need = (
            f"about {f['images_needed']:,} certification images would certify it at this rate of images lost and gained"
            if f["images_needed"]
            else "no number of images would: its drop itself is over the budget"
        )
        verdict = (
            f"search: nothing certified within budget.max_drop={max_drop:g} at "
            f"{100 * confidence:g}% confidence: none of the {sequence['tested']} frontier files within it on the "
            f"selection split passed; the most accurate, {f['file']} on {f['runtime']} ({f['recipe']}), has "
            f"{certify.phrase(f)}; {need}; nothing shipped"
        )
    else:
        closest = min(rows, key=lambda r: r["val_drop"], default=None)
        verdict = f"search: nothing fits budget.max_drop={max_drop:g}" + (
            f": the closest is {closest['file']} on {closest['runtime']} ({closest['recipe']}), "
            f"{-closest['val_drop']:+.2f} pts on validation [over budget]"
            if closest
            else ": no trial produced a file"
        )
    return {
        "objective": s.objective,
        "runtime": s.runtime,
        "max_drop": max_drop,
        "verdict": verdict,
        "baseline": {k: b[k] for k in ("val/acc", "test/acc", "compress/size_mb", "latency/b1_ms", "latency/b64_ms")},
        "chosen": chosen,
        "held/test": chosen["test_drop"] <= max_drop if chosen else None,
        "frontier": front,
        "timing": timing,
        "certification": sequence,
        "test_answers": tested_now or {},  # correct.json's, not search.json's
    }
