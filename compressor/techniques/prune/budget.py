"""How an accuracy budget searches technique=prune's recipe (compressor/budget.py calls
`search` through Prune.search): per-layer amounts, L1 or channels, in two phases, each bisected on
validation with probes. A candidate is pruned and fine-tuned on a copy (for the stage's epochs, or
`budget.probe_epochs` when set: faster, but more pessimistic) and kept if its validation accuracy
stays >= the floor.
1. The stage's single `amount` (its scope: global ranking by default; `lamp` ranks LAMP's
   layer-adaptive scores, the better single amount near the unstructured edge), written as the
   per-layer amounts it gives (`allocation`): bisected over `budget.grid`, then REFINE halvings
   between the last amount within the floor and the next. So the search starts where the best
   single amount ends and never ends below it on validation.
2. From that recipe, a greedy knapsack over the per-layer scan of the stage's input (scan.py:
   each layer alone at each grid amount, no fine-tuning) orders the next steps (`steps`): each
   raises the one layer whose next grid amount removes the most weights (channel: MACs, or latency by
   `technique.cost`) per point
   of drop it costs alone, so big tolerant layers go first. The last step within the floor wins;
   the stage then fine-tunes with those amounts for its own epochs (the same seed and fit as its
   probe). The search assumes accuracy falls as steps are added; on a small validation set (500
   images: one point is five) that holds only roughly, so a step can pass on validation and lose
   more on test."""

import copy
import logging
import math

import lightning as L
import torch
from torch import nn

from compressor import measure
from compressor.techniques.base import Context, copy_of
from compressor.techniques.layers import channel_layers, make_permanent, select_layers
from compressor.techniques.prune import importance
from compressor.techniques.prune.callback import Pruning
from compressor.techniques.prune.scan import prune_scan

log = logging.getLogger("compressor")
REFINE = 2  # halvings of the single amount between two grid amounts (0.5 / 0.6 -> 0.525 ... 0.575)


def steps(rows: list[dict], start: dict | None = None) -> list[tuple[float, dict]]:
    """Candidate recipes from the least to the most pruned, by greedy knapsack on the scan: start
    from `start` ({layer: amount}; nothing pruned when None); each step raises the one layer whose
    next grid amount above where it stands removes the most (weights, or MACs for channels: the
    rows' `saved`) per point of validation drop it costs alone, free steps first. A layer's drop
    counts as the worst seen at or below an amount. Returns (summed scan drop beyond `start`,
    amounts) after every step."""
    start = start or {}
    curves = {}
    for r in sorted(rows, key=lambda r: r["amount"]):
        curve = curves.setdefault(r["layer"], [(0.0, 0.0, 0)])  # (amount, drop so far, saved)
        curve.append((r["amount"], max(curve[-1][1], r["drop"], 0.0), r["saved"]))
    for layer, curve in curves.items():  # each layer starts at its start amount, costed as the grid point below
        i = max(i for i, (a, _, _) in enumerate(curve) if a <= start.get(layer, 0.0) + 1e-9)
        curves[layer] = [(start.get(layer, 0.0), *curve[i][1:])] + curve[i + 1 :]
    at = {layer: 0 for layer in curves}
    out, cost = [], 0.0
    while True:
        options = []
        for layer, i in at.items():
            if i + 1 < len(curves[layer]):
                (_, d0, s0), (_, d1, s1) = curves[layer][i], curves[layer][i + 1]
                options.append(((s1 - s0) / (d1 - d0 + 1e-3), layer, d1 - d0))
        if not options:
            return out
        _, layer, extra = max(options)
        at[layer] += 1
        cost += extra
        out.append((cost, {**start, **{name: curves[name][i][0] for name, i in at.items()}}))


def allocation(model: nn.Module, stage, amount: float, example_shape) -> dict:
    """The per-layer amounts that the stage's one `amount` gives (its scope: global ranking, or the
    same fraction in every layer), read off a pruned copy: zeroed weights per layer (unstructured)
    or output channels gone per layer (channel; the classifier keeps its classes). Replayed as
    `amounts`, this is the single-amount prune written as a per-layer recipe."""
    layers = select_layers(model, stage.include, stage.exclude)
    if stage.method == "channel":
        layers = channel_layers(model, layers)
    width = {n: m.weight.shape[0] for n, m in layers.items()}
    out = copy.deepcopy(model).cpu()
    criterion = "l1" if importance.needs_gradients(stage.importance) else stage.importance  # gradients need a fit
    Pruning(
        method=stage.method,
        amount=amount,
        scope=stage.scope,
        include=stage.include,
        exclude=stage.exclude,
        example_shape=example_shape,
        importance=criterion,
    ).apply(out, amount)
    make_permanent(out)
    modules = dict(out.named_modules())
    if stage.method == "channel":  # 4 decimals, rounded down: per-layer pruning removes ceil(amount x channels)
        return {n: math.floor((1 - modules[n].weight.shape[0] / width[n]) * 1e4 + 1e-6) / 1e4 for n in layers}
    # exact: per-layer L1 removes round(amount x weights), so a rounded amount could move a big layer's count;
    # a layer the global ranking emptied (ResNet-18's fc at 0.99) keeps one weight: amounts lie in [0, 1)
    return {
        n: min(
            1 - int(torch.count_nonzero(modules[n].weight)) / modules[n].weight.numel(),
            1 - 1 / modules[n].weight.numel(),
        )
        for n in layers
    }


def search(budget, stage, model, floor: float) -> dict:
    """Per-layer amounts for a prune stage: its single amount bisected, then per-layer steps."""
    cfg, node = budget.cfg, stage.node
    layers = list(select_layers(model, node.include, node.exclude))
    rows = prune_scan(
        model,
        budget.selection(),
        layers,
        cfg.budget.grid,
        [node.method],
        budget.shape,
        node.get("cost", "macs"),
        cfg.latency.threads,
    )
    probe_ctx = Context(
        cfg,
        budget.dm,
        None,
        budget.run_dir,
        budget.shape,
        epochs=cfg.budget.probe_epochs,
        name="probe",
        log=False,
        goal=(budget.selection(), floor),  # a probe's recovery decides on the selection images too
    )
    epochs = stage.epochs(probe_ctx)
    example = torch.randn(*budget.shape)
    probes, tried = [], []  # tried: (val/acc, recipe) of every probe

    def probe(amounts: dict, phase: str, **about) -> bool:
        """The stage's own apply on a copy with `amounts`, measured on validation."""
        L.seed_everything(cfg.seed, workers=True)
        candidate = copy_of(stage)
        candidate.overrides["amounts"] = amounts
        pruned, _ = candidate.apply(copy.deepcopy(model), probe_ctx)
        acc = budget.val_acc(pruned)
        size = (
            measure.macs(pruned, example)
            if node.method == "channel"
            else measure.parameters(pruned)["compress/sparsity"]
        )
        probes.append(
            {
                "phase": phase,
                **about,
                "val/acc": acc,
                "within": budget.within(acc, floor),
                "compress/macs" if node.method == "channel" else "compress/sparsity": size,
            }
        )
        tried.append((acc, amounts))
        return probes[-1]["within"]

    # 1. the stage's single amount (its scope), as a per-layer recipe: bisected over the grid, then
    #    REFINE halvings between the last amount within the floor and the first one under it
    grid, lo, hi = sorted(cfg.budget.grid), -1, len(cfg.budget.grid)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (
            (mid, hi)
            if probe(allocation(model, node, grid[mid], budget.shape), "one amount", amount=grid[mid])
            else (lo, mid)
        )
    a, b = (grid[lo] if lo >= 0 else 0.0), (grid[hi] if hi < len(grid) else None)
    for _ in range(REFINE if b is not None else 0):
        mid = round((a + b) / 2, 4)
        a, b = (mid, b) if probe(allocation(model, node, mid, budget.shape), "one amount", amount=mid) else (a, mid)
    start = allocation(model, node, a, budget.shape) if a > 0 else None
    # 2. from there, per-layer steps: the knapsack on the scan raises the layers that cost least per saving
    options = steps(rows, start)
    lo, hi = -1, len(options)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (
            (mid, hi)
            if probe(options[mid][1], "per layer", step=mid + 1, of=len(options), scan_drop_pts=options[mid][0])
            else (lo, mid)
        )
    chosen = options[lo][1] if lo >= 0 else start
    over = chosen is None
    if over:
        chosen = max(tried, key=lambda t: t[0])[1] if tried else {layer: 0.0 for layer in layers}
        log.warning(
            "budget: no per-layer pruning keeps validation accuracy >= %.4f (budget %g pts); keeping "
            "the best attempt, over budget",
            floor,
            budget.max_drop,
        )
    return {
        "amounts": chosen,
        "from_amount": a,
        "per_layer_steps": lo + 1,
        "steps": len(options),
        "over_budget": over,
        "probe_epochs": epochs,
        "probes": probes,
        "sensitivity": rows,
    }
