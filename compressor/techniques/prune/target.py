"""technique.speedup (channel): the per-layer channel counts that make the model that many times
cheaper by what `technique.cost` counts (MACs, or latency measured on torch at batch 1 or 64),
losing the least validation accuracy on the way: NetAdapt (Yang et al., ECCV 2018), on the runtime
and batch the cost names.

In ITERATIONS steps, each to a geometric share of the target: for every layer, the most channels it
can keep (bisected on the whole model's measured ratio, unpruned over pruned, timed side by side)
for the model to reach the step's share; each such proposal, pruned by L1 from the unpruned model,
is fine-tuned briefly and measured on validation images, and the most accurate is taken. The stage
then prunes the unpruned model to those widths (L1) and fine-tunes for its own epochs. The choice is
saved in the stage's checkpoint folder (`FILE`), so a resumed or repeated job prunes the same
channels although timings are noisy.

A first version ordered the layers by the budget's knapsack on the per-layer scan (drop without
fine-tuning) instead, and measured worse than global L1 at equal latency: a layer's drop before
any fine-tune says little about it after one (experiments/README.md, "Latency-aware against
magnitude")."""

import json
import logging
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from compressor import measure, results
from compressor.errors import ConfigError
from compressor.storage import cache
from compressor.techniques.layers import channel_layers, select_layers
from compressor.techniques.prune.scan import pruned
from compressor.training import ddp
from compressor.training.fit import optim_args

log = logging.getLogger("compressor")
FILE = "speedup.json"  # in the stage's checkpoint folder: the amounts chosen, reused on resume
BATCH = {"latency_b1": 1, "latency_b64": 64}
ITERATIONS = 8  # NetAdapt's steps to the target, each a geometric share of it
REPS = 5  # timed calls per model and round (3 interleaved rounds) in each of the search's measurements
SHORT = 100  # training batches of each proposal's short-term fine-tune


def ratio(cost: str, model, candidate, example_shape, threads: int = 1) -> float:
    """How many times less `cost` the candidate takes than the model: MACs counted, or latency timed
    side by side in interleaved rounds (the median of the per-round ratios)."""
    example = torch.randn(*example_shape)
    if cost == "macs":
        return measure.macs(model, example) / measure.macs(candidate, example)
    rounds = measure.rounds({"base": model, "candidate": candidate}, example, BATCH[cost], threads, reps=REPS, count=3)
    return statistics.median(b / c for b, c in zip(rounds["base"], rounds["candidate"], strict=True))


def amounts_of(widths: dict, keep: dict) -> dict:
    """{layer: fraction of its channels gone} for `keep` ({layer: channels kept}) of `widths`."""
    return {n: (widths[n] - keep[n]) / widths[n] for n in widths}


def tuned(candidate, train, optim: dict, seed: int):
    """NetAdapt's short-term fine-tune: SHORT training batches (the loader cycled when shorter),
    seeded, with the job's optimizer at the stage's learning rate."""
    from compressor.modules.classifier import optimizer

    torch.manual_seed(seed)
    opt = optimizer(candidate.parameters(), optim)
    candidate.train()
    done = 0
    while done < SHORT:
        if not len(train):
            raise ConfigError("technique.speedup: the training loader has no batch to fine-tune a proposal on")
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(candidate(x), y).backward()
            opt.step()
            done += 1
            if done == SHORT:
                break
    return candidate.eval()


def search(node, model, train, val, example_shape, optim: dict, seed: int = 0, threads: int = 1) -> dict:
    """{amounts, ratio, iterations, reached, trail}: NetAdapt's iterations towards node.speedup. Each
    iteration's target is a geometric share of it (ITERATIONS to reach it). For each layer, the most
    channels it can keep while the whole model, pruned from the unpruned one to the widths so far and
    that layer's new width, measures the iteration's target; each proposal is fine-tuned briefly
    (`tuned`) and measured on validation; the most accurate wins (ties: the smallest share of its
    layer cut, the layer whose channels cost most). With technique.round_to, the widths tried are its
    multiples. When no layer can reach an iteration's target,
    the widths reached so far are kept, with reached=False."""
    layers = select_layers(model, node.include, node.exclude)
    widths = {n: m.weight.shape[0] for n, m in channel_layers(model, layers).items()}
    if not widths:
        raise ConfigError("technique.speedup: no layer of technique.include can lose a channel")
    keep, trail, got = dict(widths), [], 1.0
    step = node.get("round_to") or 1  # widths tried: multiples of technique.round_to

    def cut(layer: str, c: int):
        return pruned(model, "channel", amounts_of(widths, {**keep, layer: c}), example_shape)

    for i in range(1, ITERATIONS + 1):
        goal = node.speedup ** (i / ITERATIONS)
        proposals = []
        for layer in widths:
            if keep[layer] <= step:
                continue
            measured = {step: ratio(node.cost, model, cut(layer, step), example_shape, threads)}
            if measured[step] < goal:
                continue
            # channels kept, in multiples of `step`: lo reaches the goal, hi does not
            lo, hi = 1, -(-keep[layer] // step)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                measured[mid * step] = ratio(node.cost, model, cut(layer, mid * step), example_shape, threads)
                lo, hi = (mid, hi) if measured[mid * step] >= goal else (lo, mid)
            lo *= step
            candidate = tuned(cut(layer, lo), train, optim, seed)
            share = (keep[layer] - lo) / widths[layer]
            proposals.append((measure.accuracy_of(candidate, val), -share, layer, lo, measured[lo]))
        if not proposals:
            log.warning(
                "technique.speedup=%g: no layer's channels reach %.2fx by %s (iteration %d of %d); keeping %.2fx",
                node.speedup,
                goal,
                node.cost,
                i,
                ITERATIONS,
                got,
            )
            break
        acc, _, layer, c, got = max(proposals)  # got: the ratio its bisection measured
        keep[layer] = c
        trail.append({"iteration": i, "goal": goal, "layer": layer, "kept": c, "val/acc": acc, "ratio": got})
        log.info(
            "technique.speedup: iteration %d, %s keeps %d of %d channels (%.2fx, val/acc %.4f after a short tune)",
            i,
            layer,
            c,
            widths[layer],
            got,
            acc,
        )
    return {
        "target": node.speedup,
        "cost": node.cost,
        "ratio": got,
        "iterations": len(trail),
        "reached": got >= node.speedup or len(trail) == ITERATIONS,
        "amounts": amounts_of(widths, keep),
        "trail": trail,
    }


def chosen(node, model, ctx) -> dict:
    """The search's choice, read from the stage's checkpoint folder when a run before this one saved it
    (a resumed or repeated job), else searched and saved there first. Under the file's lock: DDP ranks
    that start together (SLURM, torchrun) wait for the first to search, and all prune alike."""
    if ctx.checkpoint_dir is None:  # a fit without a checkpoint folder: nothing to resume
        return search_in(node, model, ctx)
    saved = Path(ctx.checkpoint_dir) / FILE
    with cache.locked(saved.with_suffix(".lock"), ddp.timeout_s(ctx.cfg)):
        if saved.is_file():
            found = json.loads(saved.read_text())
            if found.get("target") == node.speedup and found.get("cost") == node.cost:
                log.info("technique.speedup: reusing the amounts chosen before (%s)", saved)
                return found
        found = search_in(node, model, ctx)
        results.write(saved, found)  # whole or not at all
        return found


def search_in(node, model, ctx) -> dict:
    """`search` on the job's data: training batches for the short fine-tunes, validation images to
    choose on (the budget's selection half when there is one: test images stay out)."""
    val = ctx.goal[0] if ctx.goal else ctx.dm.val_dataloader()
    optim = optim_args(ctx.cfg, node.get("lr"))
    return search(node, model, ctx.dm.train_dataloader(), val, ctx.shape, optim, ctx.cfg.seed, ctx.cfg.latency.threads)
