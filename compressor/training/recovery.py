"""When a compression stage's fine-tune stops (issue 57: recovery that recovers, not a fixed count of
epochs). After every epoch it reads the validation accuracy the budget decides on: the selection
half under `budget.confidence` (the certification half and the test set stay out of the decision),
else the fit's own `val/acc`. It stops the fit
- once that accuracy is back within the stage's floor (`stop_within`, with `budget.max_drop`), or
- after `patience` epochs without a better one; the best epoch's weights are then restored.

Only epochs where the technique's callback is `settled` count: a best kept from before the last
pruning step would undo it. Its counts and best weights ride in every checkpoint, so a killed
recovery resumes with them, and one whose stop was reached before the kill stops at once."""

import copy
import logging

import lightning as L
import torch

log = logging.getLogger("compressor")


class Recovery(L.Callback):
    def __init__(self, technique=None, loader=None, floor: float | None = None, patience=None, stop_within=False):
        self.technique, self.loader, self.floor = technique, loader, floor
        self.patience, self.stop_within = patience, bool(stop_within and floor is not None)
        self.best, self.best_epoch, self.wait, self.stopped = None, None, 0, None
        self.best_state = None

    @property
    def active(self) -> bool:
        return bool(self.patience) or self.stop_within

    @property
    def state_key(self) -> str:
        return "Recovery"

    def accuracy(self, trainer, pl_module) -> float | None:
        if self.loader is None:
            value = trainer.callback_metrics.get("val/acc")
            return None if value is None else float(value)
        from compressor import measure

        model = pl_module.model
        was_training, device = model.training, next(model.parameters()).device
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a loader's iterator draws a seed: the fit's stay
            acc = measure.accuracy(*measure.predict(model, self.loader, device))
        model.train(was_training)
        return acc

    def on_train_start(self, trainer, pl_module):
        if self.stopped is not None:  # resumed after the stop was reached: the uninterrupted fit ended there
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not self.active:
            return
        epoch = trainer.current_epoch
        settled = self.technique is None or self.technique.settled(epoch, trainer.max_epochs)
        acc = self.accuracy(trainer, pl_module)
        if acc is None or not settled:
            return
        if self.best is None or acc > self.best:
            self.best, self.best_epoch, self.wait = acc, epoch, 0
            if self.patience:
                self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        else:
            self.wait += 1
        within = self.stop_within and acc >= self.floor - 1e-6
        plateau = bool(self.patience) and self.wait >= self.patience
        stop = trainer.strategy.reduce_boolean_decision(within or plateau, all=False)
        if stop:
            self.stopped = "within" if within else "plateau"
            trainer.should_stop = True
            log.info(
                "recovery: stopped after epoch %d of %d (%s: val/acc %.4f%s)",
                epoch + 1,
                trainer.max_epochs,
                "back within the budget" if within else f"{self.patience} epochs without a better one",
                acc,
                f", floor {self.floor:.4f}" if self.floor is not None else "",
            )

    def on_fit_end(self, trainer, pl_module):
        """The best settled epoch's weights, when a patience ran out after it (before the technique's
        own on_fit_end, which may make masks permanent or convert the model)."""
        if self.best_state is None or self.stopped == "within":
            return
        current = pl_module.state_dict()
        if current.keys() == self.best_state.keys() and all(
            current[k].shape == v.shape for k, v in self.best_state.items()
        ):
            pl_module.load_state_dict(copy.copy(self.best_state))

    def summary(self) -> dict:
        if not self.active:
            return {}
        out = {"recovery/best_epoch": None if self.best_epoch is None else self.best_epoch + 1}
        out["recovery/stopped"] = self.stopped or "epochs"
        if self.best is not None:
            out["recovery/val_acc"] = self.best
        return out

    def state_dict(self):
        if not self.active:
            return {}
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped": self.stopped,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state):
        if not state:  # saved while off, or by a version without recovery
            return
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped, self.best_state = state["stopped"], state["best_state"]
