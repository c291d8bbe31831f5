"""The accuracy budget: the most compression within `budget.max_drop` points of the baseline's
validation accuracy. Searches use validation data only; the job then measures the final model
on the test set, and results.json says whether the budget held on both.

How a stage spends it (a stage is searched when its `searchable()` says so; its `search` calls
the strategy here for its kind of recipe and keeps what it chose in the stage's `overrides`):
- prune (l1_unstructured or channel, no `amounts` given), in two phases, each bisected on
  validation with probes: a candidate is pruned and fine-tuned on a copy (for the stage's epochs,
  or `budget.probe_epochs` when set: faster, but more pessimistic) and kept if its validation
  accuracy stays >= the floor.
  1. The stage's single `amount` (its scope: global ranking by default; `lamp` ranks LAMP's
     layer-adaptive scores, the better single amount near the unstructured edge), written as
     the per-layer amounts it gives (`allocation`): bisected over `budget.grid`, then REFINE
     halvings between the last amount within the floor and the next. So the search starts where
     the best single amount ends and never ends below it on validation.
  2. From that recipe, a greedy knapsack over a sensitivity scan of the stage's input
     (compressor.search.sensitivity: each layer alone at each grid amount, no fine-tuning) orders the
     next steps (`steps`): each raises the one layer whose next grid amount removes the most
     weights (channel: MACs) per point of drop it costs alone, so big tolerant layers go first.
     The last step within the floor wins; the stage then fine-tunes with those amounts for its
     own epochs (the same seed and fit as its probe). The search assumes accuracy falls as
     steps are added; on a small validation set (500 images: one point is five) that holds only
     roughly, so a step can pass on validation and lose more on test.
- quant (static int8, torch): int8 everywhere; while validation accuracy is under the floor,
  the layer whose return to float helps most (ranked by the int8-all-but-this-layer scan) goes
  back to float, one at a time, re-measured after each (OpenVINO's AccuracyAware idea).
- quant (static, openvino): the same idea, done by NNCF's quantize_with_accuracy_control with
  max_drop in the same points (absolute), measured on the same validation loader.
- pipeline: one budget shared in order. A searched stage may use the unspent budget divided by
  the number of searched stages still to come; what it leaves passes on. Other stages (kd,
  other quant modes) spend what they cost.
When nothing fits, the job says so in one line and keeps the best attempt, labelled over budget."""
import copy
import logging
import math

import lightning as L
import torch
from torch import nn

from compressor import measure
from compressor.search import sensitivity
from compressor.callbacks.prune import Pruning, make_permanent, select_layers
from compressor.quant.ops import calibration_inputs
from compressor.stages.base import Context, copy_of

log = logging.getLogger("compressor")
# accuracies are float32 means: 480/500 and a floor of 0.97 - 0.01 differ by ~5e-8, not by an image
TOLERANCE = 1e-6
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
        curves[layer] = [(start.get(layer, 0.0), *curve[i][1:])] + curve[i + 1:]
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
        layers = sensitivity.channel_layers(model, layers)
    width = {n: m.weight.shape[0] for n, m in layers.items()}
    out = copy.deepcopy(model).cpu()
    importance = "l1" if stage.importance == "taylor" else stage.importance  # taylor needs a fit's gradients
    Pruning(method=stage.method, amount=amount, scope=stage.scope, include=stage.include, exclude=stage.exclude,
            example_shape=example_shape, importance=importance).apply(out, amount)
    make_permanent(out)
    modules = dict(out.named_modules())
    if stage.method == "channel":  # 4 decimals, rounded down: per-layer pruning removes ceil(amount x channels)
        return {n: math.floor((1 - modules[n].weight.shape[0] / width[n]) * 1e4 + 1e-6) / 1e4 for n in layers}
    # exact: per-layer L1 removes round(amount x weights), so a rounded amount could move a big layer's count;
    # a layer the global ranking emptied (ResNet-18's fc at 0.99) keeps one weight: amounts lie in [0, 1)
    return {n: min(1 - int(torch.count_nonzero(modules[n].weight)) / modules[n].weight.numel(),
                   1 - 1 / modules[n].weight.numel()) for n in layers}


class Budget:
    """One job's budget: `before` has a searchable stage search its recipe, `after` books what
    the stage cost, `report` is results.json's `budget` block."""

    def __init__(self, cfg, plan, reference, dm, example_shape, run_dir):
        self.cfg, self.dm, self.shape, self.run_dir = cfg, dm, list(example_shape), run_dir
        self.max_drop = cfg.budget.max_drop
        self.active = self.max_drop is not None and bool(plan)
        self.searches_left = sum(s.searchable() for s in plan)
        self.records, self.pending, self.spent = [], None, 0.0  # spent: points below the baseline so far
        if not self.active:
            return
        if not self.searches_left:
            log.warning("budget.max_drop=%g: no stage of technique=%s can be searched (prune l1_unstructured/channel, "
                        "quant static on torch or openvino); the budget is only checked", self.max_drop, cfg.technique.name)
        self.right = self.correct(reference)
        self.reference = self.right.mean().item()

    def val_acc(self, model) -> float:
        return sensitivity.accuracy(model, self.dm.val_dataloader())

    def correct(self, model) -> torch.Tensor:
        """1.0 for each validation image the model gets right, else 0.0."""
        logits, labels = measure.predict(model, self.dm.val_dataloader())
        return (logits.argmax(1) == labels).float()

    # -- per stage --------------------------------------------------------------------------
    def before(self, stage, model) -> None:
        """A searched stage may use max(0, unspent / searched stages left): once earlier stages have
        spent the budget, it only takes what costs no validation accuracy."""
        if not self.active:
            return
        record = {"stage": stage.kind, "searched": stage.searchable()}
        if record["searched"]:
            allowed = max(0.0, (self.max_drop - self.spent) / self.searches_left)
            self.searches_left -= 1
            floor = self.reference - (self.spent + allowed) / 100
            record.update({"allowed_pts": allowed, "floor val/acc": floor})
            record.update(stage.search(self, model, floor))
        self.pending = record

    def after(self, model) -> None:
        """Book the stage's cost: validation points lost since the stage before (or the baseline)."""
        if not self.active:
            return
        record, self.pending = self.pending, None
        right = self.correct(model)
        record["val/acc"] = right.mean().item()
        drop = 100 * (self.reference - record["val/acc"])
        record["used_pts"], self.spent = drop - self.spent, drop
        # the drop's standard error, paired image by image: how finely this validation set resolves a budget
        record["val/drop_se"] = 100 * (self.right - right).std().item() / math.sqrt(len(right))
        self.records.append(record)

    # -- the verdict ------------------------------------------------------------------------------
    def report(self, metrics: dict, reference_metrics: dict) -> dict | None:
        if not self.active:
            return None
        val = 100 * (reference_metrics["val/acc"] - metrics["val/acc"])
        test = 100 * (reference_metrics["test/acc"] - metrics["test/acc"])
        out = {"max_drop": self.max_drop, "val/drop": val, "test/drop": test,
               "held/val": val <= self.max_drop + 100 * TOLERANCE, "held/test": test <= self.max_drop + 100 * TOLERANCE,
               "val/drop_se": self.records[-1]["val/drop_se"] if self.records else None, "stages": self.records}
        se, n = out["val/drop_se"], len(self.right)
        if se and self.max_drop < 2 * se:
            log.warning("budget.max_drop=%g is under two standard errors of the validation drop (%.2f pts on %d images): "
                        "the test drop may differ by as much; a larger validation split resolves a finer budget", self.max_drop,
                        se, n)
        if not out["held/val"]:
            log.warning("over budget: validation accuracy %.2f pts below the baseline, budget.max_drop=%g", val,
                        self.max_drop)
        elif not out["held/test"]:
            log.warning("budget held on validation (%.2f pts) but not on test (%.2f pts > %g)", val, test, self.max_drop)
        return out


def prune(budget: Budget, stage, model, floor: float) -> dict:
    """Per-layer amounts for a prune stage: its single amount bisected, then per-layer steps."""
    cfg, node = budget.cfg, stage.node
    layers = list(select_layers(model, node.include, node.exclude))
    rows = sensitivity.prune_scan(model, budget.dm.val_dataloader(), layers, cfg.budget.grid, [node.method],
                                  budget.shape)
    probe_ctx = Context(cfg, budget.dm, None, budget.run_dir, budget.shape, epochs=cfg.budget.probe_epochs,
                        name="probe", log=False)
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
        size = measure.macs(pruned, example) if node.method == "channel" \
            else measure.parameters(pruned)["compress/sparsity"]
        probes.append({"phase": phase, **about, "val/acc": acc, "within": acc >= floor - TOLERANCE,
                       "compress/macs" if node.method == "channel" else "compress/sparsity": size})
        tried.append((acc, amounts))
        return probes[-1]["within"]

    # 1. the stage's single amount (its scope), as a per-layer recipe: bisected over the grid, then
    #    REFINE halvings between the last amount within the floor and the first one under it
    grid, lo, hi = sorted(cfg.budget.grid), -1, len(cfg.budget.grid)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if probe(allocation(model, node, grid[mid], budget.shape), "one amount",
                                    amount=grid[mid]) else (lo, mid)
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
        lo, hi = (mid, hi) if probe(options[mid][1], "per layer", step=mid + 1, of=len(options),
                                    scan_drop_pts=options[mid][0]) else (lo, mid)
    chosen = options[lo][1] if lo >= 0 else start
    over = chosen is None
    if over:
        chosen = max(tried, key=lambda t: t[0])[1] if tried else {layer: 0.0 for layer in layers}
        log.warning("budget: no per-layer pruning keeps validation accuracy >= %.4f (budget %g pts); keeping "
                    "the best attempt, over budget", floor, budget.max_drop)
    return {"amounts": chosen, "from_amount": a, "per_layer_steps": lo + 1, "steps": len(options),
            "over_budget": over, "probe_epochs": epochs, "probes": probes, "sensitivity": rows}


def quant(budget: Budget, stage, model, floor: float) -> dict:
    """The layers a static-int8 stage keeps float: none, or the most harmful until the floor holds."""
    calibration = list(calibration_inputs(budget.dm.train_dataloader(), stage.node.calibration_batches))
    val, api = budget.dm.val_dataloader(), stage.node.get("api", "fx")
    full = sensitivity.accuracy(sensitivity.int8(model, budget.shape, calibration, api=api), val)
    tried, rows, why = [{"keep_float": [], "val/acc": full}], [], {}
    if full < floor - TOLERANCE:
        layers = sensitivity.quant_layers(model, [n for n, _ in model.named_modules()])
        rows = sensitivity.quant_scan(model, val, calibration, layers, budget.shape, api)
        gain = {r["layer"]: r["val/acc"] - full for r in rows if r["method"] == "int8_all_but"}
        alone = {r["layer"]: r["drop"] for r in rows if r["method"] == "int8_only"}
        # most harmful first: float helps most when all else is int8; ties: costs most when int8 alone
        for rank, name in enumerate(sorted(layers, key=lambda n: (-gain[n], -alone[n])), 1):
            kept = tried[-1]["keep_float"] + [name]
            tried.append({"keep_float": kept, "val/acc": sensitivity.accuracy(
                sensitivity.int8(model, budget.shape, calibration, kept, api=api), val)})
            why[name] = (f"int8 everywhere scored {full:.4f} on validation, under the floor {floor:.4f}; harm rank "
                         f"{rank}: float alone gains {100 * gain[name]:.2f} pts, int8 alone costs {alone[name]:.2f}")
            if tried[-1]["val/acc"] >= floor - TOLERANCE:
                break
    within = [s for s in tried if s["val/acc"] >= floor - TOLERANCE]
    best = within[0] if within else max(tried, key=lambda s: s["val/acc"])
    if not within:
        log.warning("budget: static int8 stays under validation accuracy %.4f (budget %g pts) even with layers "
                    "kept float; keeping the best attempt, over budget", floor, budget.max_drop)
    kept = list(best["keep_float"])
    return {"keep_float": kept, "why": {n: why[n] for n in kept}, "over_budget": not within,
            "steps": tried, "sensitivity": rows}

def openvino(budget: Budget, model, floor: float) -> dict:
    """NNCF's accuracy control does the same search inside nncf.quantize_with_accuracy_control:
    int8 everywhere, then the layers that cost most back to float until the validation drop
    from this stage's input is within what the stage may use."""
    allowed = 100 * (budget.val_acc(model) - floor)
    return {"accuracy_control": "nncf.quantize_with_accuracy_control", "max_drop_pts": max(0.0, allowed)}
