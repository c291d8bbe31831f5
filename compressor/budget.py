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
When nothing fits, the job says so in one line and keeps the best attempt, labelled over budget.

With `budget.confidence` (0.95 by default) the search reads only the selection half of the
validation images (`selection`), and the final model's drop is certified on the other half at that
confidence (compressor/certify.py); a model not certified is labelled over budget, with one line
saying how many images would certify it."""

import logging
import math

import torch

from compressor import certify, measure

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
        self.floor = None  # the stage's floor on the selection images, for its recovery (`goal`)
        if not self.active:
            return
        if not self.searches_left:
            log.warning(
                "budget.max_drop=%g: no stage of technique=%s can be searched (docs/budget.md lists the "
                "recipes that can); the budget is only checked",
                self.max_drop,
                cfg.technique.name,
            )
        self.confidence = cfg.budget.get("confidence")
        self.right = self.correct(reference)
        n = len(self.right)
        self.on, self.held_out = certify.halves(n) if self.confidence is not None else (torch.arange(n), None)
        self.reference = self.right[self.on].mean().item()
        self.last = self.right  # the model's answers after the last stage

    def selection(self):
        """The validation images the search may choose on (with a confidence: the selection half)."""
        from torch.utils.data import DataLoader, Subset

        loader = self.dm.val_dataloader()
        if self.held_out is None:
            return loader
        return DataLoader(
            Subset(loader.dataset, self.on.tolist()),
            batch_size=loader.batch_size,
            shuffle=False,
            num_workers=loader.num_workers,
        )

    def goal(self):
        """(the selection images, the floor of the stage `before` saw): what its recovery stops at."""
        return (self.selection(), self.floor) if self.active else None

    def val_acc(self, model) -> float:
        return measure.accuracy_of(model, self.selection())

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
        self.floor = self.reference - self.max_drop / 100  # a stage not searched may recover to the whole budget
        if record["searched"]:
            allowed = max(0.0, (self.max_drop - self.spent) / self.searches_left)
            self.searches_left -= 1
            floor = self.floor = self.reference - (self.spent + allowed) / 100
            record.update({"allowed_pts": allowed, "floor val/acc": floor})
            record.update(stage.search(self, model, floor))
        self.pending = record

    def after(self, model) -> None:
        """Book the stage's cost: validation points lost since the stage before (or the baseline)."""
        if not self.active:
            return
        record, self.pending = self.pending, None
        self.last = right = self.correct(model)
        record["val/acc"] = right[self.on].mean().item()
        drop = 100 * (self.reference - record["val/acc"])
        record["used_pts"], self.spent = drop - self.spent, drop
        # the drop's standard error, paired image by image: how finely these validation images resolve a budget
        record["val/drop_se"] = 100 * (self.right[self.on] - right[self.on]).std().item() / math.sqrt(len(self.on))
        self.records.append(record)

    # -- the verdict ------------------------------------------------------------------------------
    def report(self, metrics: dict, reference_metrics: dict) -> dict | None:
        if not self.active:
            return None
        val = 100 * (self.reference - self.last[self.on].mean().item())  # on the images the search chose on
        test = 100 * (reference_metrics["test/acc"] - metrics["test/acc"])
        out = {
            "max_drop": self.max_drop,
            "val/drop": val,
            "test/drop": test,
            "held/val": val <= self.max_drop + 100 * TOLERANCE,
            "held/test": test <= self.max_drop + 100 * TOLERANCE,
            "val/drop_se": self.records[-1]["val/drop_se"] if self.records else None,
            "stages": self.records,
        }
        if self.held_out is not None:
            out.update(self.certified())
        se, n = out["val/drop_se"], len(self.on)
        if se and self.max_drop < 2 * se:
            log.warning(
                "budget.max_drop=%g is under two standard errors of the validation drop (%.2f pts on %d images): "
                "the test drop may differ by as much; a larger validation split resolves a finer budget",
                self.max_drop,
                se,
                n,
            )
        if not out["held/val"]:
            log.warning(
                "over budget: validation accuracy %.2f pts below the baseline, budget.max_drop=%g", val, self.max_drop
            )
        elif out.get("certified") is False:
            need = out["certify"]["images_needed"]
            log.warning(
                "budget.max_drop=%g not certified at %g%% confidence: %s; %s",
                self.max_drop,
                100 * self.confidence,
                certify.phrase(out["certify"]),
                f"about {need:,} certification images would certify it"
                if need
                else "no number of images would: its drop itself is over the budget",
            )
        elif not out["held/test"]:
            log.warning(
                "budget held on validation (%.2f pts) but not on test (%.2f pts > %g)", val, test, self.max_drop
            )
        return out

    def certified(self) -> dict:
        """The final model's drop on the certification half, and whether its bound is within max_drop."""
        result = certify.paired(self.right[self.held_out], self.last[self.held_out], self.confidence)
        result["images_needed"] = certify.images_needed(result, self.max_drop)
        return {"certify": result, "certified": result["bound"] <= self.max_drop}
