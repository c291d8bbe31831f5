"""technique.speedup (channel): the per-layer channel amounts that make the model that many times
cheaper by what `technique.cost` counts (MACs, or latency measured on torch at batch 1 or 64),
losing the least validation accuracy on the way: NetAdapt's target, reached by the budget's knapsack.

1. The per-layer scan of the stage's input (scan.py: each layer alone at each `budget.grid` amount,
   on validation images, no fine-tuning), costed by `technique.cost` (cost.py: a per-layer latency
   table for latency_b1/b64).
2. The knapsack's steps (budget.py: `steps`), each raising the layer whose next amount saves the
   most per point of scan drop, give candidates from the least to the most pruned.
3. Bisected on the whole model's measured ratio (unpruned over candidate, per interleaved round,
   the median): the fewest steps that reach `speedup`.
The stage then fine-tunes with those amounts. The choice is saved in the stage's checkpoint folder
(`FILE`), so a resumed or repeated job prunes the same channels though latency is noisy."""

import json
import logging
import os
import statistics
from pathlib import Path

import torch

from compressor import measure
from compressor.errors import ConfigError
from compressor.techniques.layers import select_layers
from compressor.techniques.prune.budget import steps
from compressor.techniques.prune.scan import prune_scan, pruned

log = logging.getLogger("compressor")
FILE = "speedup.json"  # in the stage's checkpoint folder: the amounts chosen, reused on resume
BATCH = {"latency_b1": 1, "latency_b64": 64}


def ratio(cost: str, model, candidate, example_shape, threads: int = 1) -> float:
    """How many times less `cost` the candidate takes than the model: MACs counted, or latency timed
    side by side in interleaved rounds (the median of the per-round ratios)."""
    example = torch.randn(*example_shape)
    if cost == "macs":
        return measure.macs(model, example) / measure.macs(candidate, example)
    rounds = measure.rounds({"base": model, "candidate": candidate}, example, BATCH[cost], threads)
    return statistics.median(b / c for b, c in zip(rounds["base"], rounds["candidate"], strict=True))


def search(node, model, loader, example_shape, grid, threads: int = 1) -> dict:
    """{amounts, ratio, steps, of, reached}: the fewest knapsack steps whose measured ratio reaches
    node.speedup; when none does, the most pruned candidate, with reached=False."""
    layers = list(select_layers(model, node.include, node.exclude))
    rows = prune_scan(model, loader, layers, grid, ["channel"], example_shape, node.cost, threads)
    options = steps(rows)
    if not options:
        raise ConfigError(
            "technique.speedup: no layer of technique.include can lose a channel at budget.grid's amounts"
        )
    measured = {}

    def measure_step(i: int) -> float:
        candidate = pruned(model, "channel", options[i][1], example_shape)
        measured[i] = ratio(node.cost, model, candidate, example_shape, threads)
        return measured[i]

    lo, hi = -1, len(options)  # options[lo] falls short of the target, options[hi] reaches it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if measure_step(mid) >= node.speedup else (mid, hi)
    reached = hi < len(options)
    if not reached:
        hi = len(options) - 1
        if hi not in measured:
            measure_step(hi)
        log.warning(
            "technique.speedup=%g: the most pruned recipe of the scan's grid is %.2fx cheaper by %s; keeping it",
            node.speedup,
            measured[hi],
            node.cost,
        )
    return {
        "target": node.speedup,
        "cost": node.cost,
        "ratio": measured[hi],
        "steps": hi + 1,
        "of": len(options),
        "reached": reached,
        "amounts": options[hi][1],
    }


def chosen(node, model, ctx) -> dict:
    """The search's choice, read from the stage's checkpoint folder when a run before this one saved it
    (a resumed or repeated job), else searched and saved there first."""
    saved = Path(ctx.checkpoint_dir) / FILE if ctx.checkpoint_dir is not None else None
    if saved is not None and saved.is_file():
        found = json.loads(saved.read_text())
        if found.get("target") == node.speedup and found.get("cost") == node.cost:
            log.info("technique.speedup: reusing the amounts chosen before (%s)", saved)
            return found
    loader = ctx.goal[0] if ctx.goal else ctx.dm.val_dataloader()  # validation only: test stays out
    found = search(node, model, loader, ctx.shape, list(ctx.cfg.budget.grid), ctx.cfg.latency.threads)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        part = saved.with_suffix(".part")
        part.write_text(json.dumps(found, indent=1))
        os.replace(part, saved)
    return found
