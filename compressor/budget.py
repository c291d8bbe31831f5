"""The accuracy budget: the most compression within `budget.max_drop` points of the baseline's
validation accuracy. Searches use validation data only; the job then measures the final model
on the test set, and results.json says whether the budget held on both.

How a stage spends it: a stage is searched when its `searchable()` says so; its `search` runs its
technique's own strategy (compressor/techniques/<name>/budget.py: prune's per-layer amounts,
quant's layers kept float) and keeps what it chose in the stage's `overrides`. The strategies
call back `val_acc`, `within` and the floor given here.
- pipeline: one budget shared in order. A searched stage may use the unspent budget divided by
  the number of searched stages still to come; what it leaves passes on. Other stages (kd,
  other quant modes) spend what they cost.
When nothing fits, the job says so in one line and keeps the best attempt, labelled over budget."""
import logging
import math

import torch

from compressor import measure

log = logging.getLogger("compressor")
# accuracies are float32 means: 480/500 and a floor of 0.97 - 0.01 differ by ~5e-8, not by an image
TOLERANCE = 1e-6





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
            log.warning("budget.max_drop=%g: no stage of technique=%s can be searched (docs/budget.md lists the "
                        "recipes that can); the budget is only checked", self.max_drop, cfg.technique.name)
        self.right = self.correct(reference)
        self.reference = self.right.mean().item()

    def val_acc(self, model) -> float:
        return measure.accuracy_of(model, self.dm.val_dataloader())

    def within(self, acc: float, floor: float) -> bool:
        """Whether a validation accuracy meets the floor (float32 means: within TOLERANCE)."""
        return acc >= floor - TOLERANCE

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




