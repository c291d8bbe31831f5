"""make bench --only search: search=default's chosen file against what a user would pick instead,
timed side by side."""

import math
import statistics
import time
from pathlib import Path

from compressor import measure
from compressor.runtimes.deploy import example, load
from experiments.deploy import KD_EPOCHS

# -- the search (issue 27): which file to ship, against what a user would pick instead ----------------
# the single techniques at their defaults, and the best combination found by hand (experiments/README.md,
# Deploy on Fashion-MNIST: KD into SmallCNN for 12 epochs, then int8, on ONNX Runtime)
SINGLES = {
    "int8 alone": ["technique=quant"],
    "channel 0.5 alone": ["technique=prune", "technique.method=channel", "technique.amount=0.5"],
    "distillation alone": ["technique=kd"],
}
HAND = ["technique=pipeline", "technique.order=[kd,quant]", f"technique.kd.epochs={KD_EPOCHS}", "model=small_cnn"]
SEARCH_MINUTES = 50  # search.time_budget_min: no trial starts after it, so a search ends within about an hour


def shipped(files: list[dict], gain: str, max_drop: float) -> dict:
    """The file a user of one run would ship: the largest gain within max_drop validation points, else
    its most accurate, marked over budget."""
    within = [c for c in files if c["val_drop"] <= max_drop]
    if within:
        return max(within, key=lambda c: (c[gain], c["val/acc"]))
    return {**max(files, key=lambda c: c["val/acc"]), "over_budget": True}


def searching(
    bench,
    max_drop: float = 1.0,
    objectives=("latency_b1", "latency_b64"),
    trials=None,
    parallel: int = 1,
    time_budget: float = SEARCH_MINUTES,
) -> list[dict]:
    """Per seed (each its own baseline) and objective: `search=default` at budget.max_drop on SimpleCNN,
    then its chosen file timed side by side in this process with the best file of each single technique
    at its defaults (within the same budget on validation), the hand-found combination, and NNCF +
    OpenVINO int8 PTQ of the same baseline compiled for a static input shape. Ratios are the others'
    latency over the chosen file's, at the objective's batch size; accuracies are each file's own."""
    from compressor.search.frontier import GAIN
    from compressor.search.records import candidates

    rows = []
    data = bench.data_args()  # SimpleCNN is the default model and teacher
    for seed in bench.seeds:
        ours = {
            name: bench.untimed([*data, *o, "export=all", f"seed={seed}"], f"search_single_{name.split()[0]}_s{seed}")
            for name, o in {**SINGLES, "hand-found: KD into SmallCNN (12 epochs) + int8": HAND}.items()
        }
        # NNCF's int8 of the baseline, the int8 run's OpenVINO export, compiled for a static shape
        nncf = next(
            c for c in candidates(ours["int8 alone"], "openvino") if c["precision"] == "int8" and c["static_shape"]
        )
        for objective in objectives:
            gain, batch = GAIN[objective], objective.split("_")[1]
            start = time.monotonic()
            found = bench.untimed(
                [
                    *data,
                    "search=default",
                    f"budget.max_drop={max_drop}",
                    f"search.objective={objective}",
                    f"search.time_budget_min={time_budget}",
                    f"seed={seed}",
                    f"search.parallel={parallel}",
                    *([f"search.max_trials={trials}"] if trials else []),
                    *bench.search_args,
                ],
                bench.search_folder(objective, seed),
                logger="tensorboard",
            )
            minutes = (time.monotonic() - start) / 60
            chosen = found["chosen"] or {**found["frontier"][0], "over_budget": True}
            files = {
                "chosen": chosen,
                **{name: shipped(candidates(r, "any"), gain, max_drop) for name, r in ours.items()},
                "NNCF + OpenVINO int8, static shape": nncf,
            }
            one = example(Path(ours["int8 alone"]["run"]["run_dir"]))
            speeds = measure.latencies({k: load(c) for k, c in files.items()}, one, threads=1, reps=20, rounds=3)
            ms = {k: v[f"latency/{batch}_ms"] for k, v in speeds.items()}
            for name, c in files.items():
                what = "search: " + c.get("recipe", "") if name == "chosen" else name
                rows.append(
                    {
                        "objective": objective,
                        "seed": seed,
                        "file": f"{what} → {c['runtime']} {Path(c['path']).name}"
                        + (" (static shape)" if c.get("static_shape") else "")
                        + (" [over budget]" if c.get("over_budget") else ""),
                        "Δ val (pts)": -c["val_drop"],
                        "Δ test (pts)": -c["test_drop"],
                        f"{batch} ms/img": ms[name],
                        "chosen is × faster": ms[name] / ms["chosen"],
                        "budget held on test": (c["test_drop"] <= max_drop) if name == "chosen" else None,
                        "search minutes": minutes if name == "chosen" else None,
                    }
                )
    return rows


def search_verdict(rows) -> list[dict]:
    """Per objective, over seeds: the chosen file against each other path (geometric mean of the ratios)."""
    out = []
    for objective in dict.fromkeys(r["objective"] for r in rows):
        mine = [r for r in rows if r["objective"] == objective]
        seeds = sorted({r["seed"] for r in mine})
        held = [r for r in mine if r["budget held on test"] is not None]
        row = {
            "objective": objective,
            "seeds": len(seeds),
            "budget held on test": f"{sum(r['budget held on test'] for r in held)}/{len(held)}",
            "search minutes (max)": max(r["search minutes"] for r in held),
        }
        for other in dict.fromkeys(r["file"].split(" → ")[0] for r in mine if not r["file"].startswith("search:")):
            ratios = [r["chosen is × faster"] for r in mine if r["file"].startswith(other + " → ")]
            row[f"× vs {other}"] = math.exp(statistics.mean(math.log(x) for x in ratios))
        out.append(row)
    return out
