"""What one per-layer step of technique=prune's budget saves (`technique.cost`): one function per
choice, each given the unpruned model and one layer's pruned copies ({amount: model}) and returning
{amount: saving}. The budget's greedy knapsack (budget.py: `steps`) raises first the layer whose
next amount saves the most per point of drop, so what a saving is decides which layers lose channels.

- `macs`: multiply-accumulates removed (FlopCounterMode). MACs are not latency: a layer whose
  channels cost more time on the runtime than their MACs say is cut too little.
- `latency_b1`, `latency_b64`: milliseconds per image removed at that batch, measured here on torch
  with the job's `latency.threads`: the unpruned model and every pruned copy of the layer timed side
  by side in interleaved rounds (a per-layer latency table, as NetAdapt builds one), the median over
  rounds of each. A copy measured slower than the unpruned model saves nothing."""

import statistics

import torch

from compressor import measure

ROUNDS = 5  # interleaved rounds per layer's table; each model's figure is its median over them


def macs(model, copies: dict, example, threads: int = 1) -> dict:
    base = measure.macs(model, example)
    return {amount: base - measure.macs(m, example) for amount, m in copies.items()}


def latency(batch: int):
    def saved(model, copies: dict, example, threads: int = 1) -> dict:
        rounds = measure.rounds({"base": model, **copies}, example, batch, threads, count=ROUNDS)
        base = statistics.median(rounds["base"])
        return {amount: max(0.0, base - statistics.median(rounds[amount])) for amount in copies}

    return saved


COSTS = {"macs": macs, "latency_b1": latency(1), "latency_b64": latency(64)}


def saved(cost: str, model, copies: dict, example_shape, threads: int = 1) -> dict:
    """{amount: what pruning the layer to that amount saves}, by `cost` (a key of COSTS)."""
    return COSTS[cost](model, copies, torch.randn(*example_shape), threads)
