"""Pruning as one Lightning callback.

Arguments are checked in __init__ against the technique's settings (settings.py); the one-shot
prune (or the structural surgery) happens in `setup`, the gradual schedule in `on_train_epoch_start`, and `on_fit_end` makes it permanent:
no mask buffers or hooks are left in the saved model.

`amounts={layer: amount}` prunes each named layer by its own amount instead of one `amount` for
all (one shot): a recipe set by hand, or found by the accuracy budget (budget.py here) and
replayed from results.json."""

import itertools
import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune
from torch import nn

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques.callback import TechniqueCallback
from compressor.techniques.layers import classifier, device_of, make_permanent, select_layers, weighted
from compressor.techniques.prune import importance
from compressor.techniques.prune import settings as spec
from compressor.techniques.prune.schedule import cubic, lamp_counts
from compressor.techniques.shared import FIT

log = logging.getLogger(__name__)


class Pruning(TechniqueCallback):
    """`settings`: the keys of settings.Prune (amount, method, scope, ...), each checked against its
    rule there; those not given keep the defaults declared there. `taylor_batches`: the training
    batches importance=taylor reads gradients from."""

    needs = ("example_shape", "seed")

    def __init__(self, example_shape=None, seed: int = 0, taylor_batches: int = 8, **settings):
        values = s.make(spec.Prune, settings, leave_out=FIT)
        spec.check(values)  # the rules joining keys; the fit's epochs are checked against the steps in `setup`
        if not (isinstance(taylor_batches, int) and taylor_batches >= 1):
            raise ConfigError(f"taylor_batches={taylor_batches!r}: must be an integer >= 1")
        s.assign(self, values)
        self.scope = spec.scope_of(self.method, self.scope)
        self.amount, self.reg, self.amounts = float(values["amount"]), float(values["reg"]), None
        self.taylor_batches, self.seed, self.example_shape = taylor_batches, seed, example_shape
        self._regularizer = None  # a Torch-Pruning GroupNormPruner while regularize_epochs run
        self._batches = None  # training batches for taylor importance, set in setup
        self.current = 0.0  # sparsity (or channel fraction) applied so far
        if values["amounts"] is not None:
            self.set_amounts(values["amounts"])

    def set_amounts(self, amounts: dict) -> None:
        """Per-layer amounts (layer name -> fraction in [0, 1)); names are checked against the model in `check`."""
        amounts = dict(amounts) if isinstance(amounts, Mapping) else amounts
        s.check(spec.Prune, {"amounts": amounts})
        spec.check({**self.settings(), "amounts": amounts})
        if not amounts:
            raise ConfigError(f"technique.amounts={amounts!r}: must be a mapping {{layer name: amount}}")
        self.amounts = {str(k): float(v) for k, v in amounts.items()}

    # -- selection -------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Fail before any training when a glob or a per-layer name matches nothing."""
        select_layers(model, self.include, self.exclude)
        if self.amounts is not None:
            prunable = list(weighted(model))
            unknown = sorted(set(self.amounts) - set(prunable))
            if unknown:
                raise ConfigError(
                    f"technique.amounts names {unknown}, not prunable layers; layers: {', '.join(prunable)}"
                )

    def target(self, epoch: int, max_epochs: int) -> float:
        if self.amounts is not None:
            return 1.0  # the per-layer recipe, in one shot
        if self.method == "channel":
            return self.channel_target(epoch, max_epochs)
        if self.schedule == "oneshot":
            return self.amount
        ramp = self.ramp_epochs if self.ramp_epochs is not None else max(max_epochs - 1, 0)
        return cubic(epoch, self.amount, ramp)

    def settled(self, epoch: int, max_epochs: int) -> bool:
        return self.target(epoch, max_epochs) >= self.target(max(max_epochs - 1, 0), max_epochs)

    def channel_target(self, epoch: int, max_epochs: int) -> float:
        """Channels: nothing during the regularize_epochs, then `amount` in `steps` equal steps
        spread over the remaining epochs (step k at the start of its share). A pure function of
        the epoch, like the cubic schedule."""
        if epoch < self.regularize_epochs:
            return 0.0
        span = max(max_epochs - self.regularize_epochs, 1)
        k = min(self.steps, 1 + (epoch - self.regularize_epochs) * self.steps // span)
        return self.amount * k / self.steps

    # -- unstructured ---------------------------------------------------------------
    def _unstructured(self, model: nn.Module, amount: float) -> None:
        """Prune to an absolute sparsity `amount` of the chosen weights (earlier zeros count)."""
        layers = select_layers(model, self.include, self.exclude)
        make_permanent(model)  # fold any earlier mask so zeros become the smallest weights
        method = tprune.L1Unstructured if self.method == "l1_unstructured" else tprune.RandomUnstructured
        if self.method == "random_unstructured":
            torch.manual_seed(self.seed)
        params = [(m, "weight") for m in layers.values()]
        if self.scope == "global":
            tprune.global_unstructured(params, pruning_method=method, amount=amount)
        elif self.scope == "lamp":
            counts = lamp_counts({n: m.weight for n, m in layers.items()}, amount)
            for n, m in layers.items():
                method.apply(m, "weight", amount=counts[n])
        else:
            for m, name in params:
                method.apply(m, name, amount=amount)
        self.current = amount

    # -- structural ----------------------------------------------------------------
    def _criterion(self):
        """Torch-Pruning's importance for `technique.importance` (importance.py: a name, or your own)."""
        return importance.named(self.importance)()

    def _gradients(self, model: nn.Module, device) -> None:
        """Taylor importance reads gradients: the loss gradient over `taylor_batches` training batches,
        in eval mode so batch-norm statistics are not moved."""
        if self._batches is None:
            raise ConfigError(
                f"technique.importance={self.importance} reads gradients: it needs a fit's training batches"
            )
        was_training = model.training
        model.eval().zero_grad()
        with torch.enable_grad():
            for x, y, *_ in self._batches():  # a batch may carry a teacher's logits (recover=kd)
                F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        model.train(was_training)

    def _ignored(self, model: nn.Module) -> list:
        layers = select_layers(model, self.include, self.exclude)
        ignored = [m for m in weighted(model).values() if m not in layers.values()]
        return list({id(m): m for m in ignored + classifier(model)}.values())

    def _channels(self, model: nn.Module, amount: float, device) -> None:
        """Remove whole filters through Torch-Pruning's dependency graph (batch norm, residual
        additions and concatenations follow). `amount` is the fraction of channels gone."""
        import torch_pruning as tp

        if amount <= self.current:
            return
        if importance.needs_gradients(self.importance):
            self._gradients(model, device)
        example = torch.randn(*self.example_shape, device=device)
        step_ratio = 1 - (1 - amount) / (1 - self.current)  # remove this share of what is left
        if self.round_to is not None:  # scope layer (settings.check): each layer's count, rounded
            layers = select_layers(model, self.include, self.exclude).values()
            self._prune_layers(model, {m: step_ratio for m in layers if m not in classifier(model)}, device)
            self.current = amount
            return
        with torch.enable_grad():
            pruner = tp.pruner.MetaPruner(
                model,
                example,
                importance=self._criterion(),
                pruning_ratio=step_ratio,
                global_pruning=self.scope == "global",
                ignored_layers=self._ignored(model),
            )
            pruner.step()
        model.zero_grad(set_to_none=True)
        self.current = amount

    def _per_layer(self, model: nn.Module, device) -> None:
        """Each layer of `amounts` pruned by its own amount: L1 within the layer, or its channels (with
        the layers Torch-Pruning's dependency graph couples to it)."""
        modules = dict(model.named_modules())
        chosen = {modules[n]: a for n, a in self.amounts.items() if a > 0}
        if self.method != "channel":
            make_permanent(model)
            for m, a in chosen.items():
                tprune.L1Unstructured.apply(m, "weight", amount=a)
            return
        self._prune_layers(model, chosen, device)

    def _rounded(self, m: nn.Module, a: float) -> float:
        """The fraction of m's output channels to remove so that it keeps a multiple of round_to, the
        nearest to what `a` keeps (at least round_to; a layer of round_to channels or fewer stays whole)."""
        n = m.weight.shape[0]
        keep = n - math.ceil(a * n - 1e-9)
        if self.round_to is None:
            return (n - keep) / n
        if n <= self.round_to:
            return 0.0
        keep = min(n, max(self.round_to, self.round_to * round(keep / self.round_to)))
        return (n - keep) / n

    def _prune_layers(self, model: nn.Module, chosen: dict, device) -> None:
        """Each module of `chosen` ({module: fraction of its output channels gone}) loses that many
        channels, by importance within it, with the layers Torch-Pruning's dependency graph couples to it."""
        import torch_pruning as tp

        # Torch-Pruning keeps int(n * (1 - a)) channels; a hair less than `a` keeps that exact in floating point,
        # where n * (1 - 0.3) can read 6.9999: ceil(a * n) channels go
        chosen = {m: r - 1e-9 for m, a in chosen.items() if (r := self._rounded(m, a)) > 0}
        if not chosen:
            return

        others = [m for m in weighted(model).values() if m not in chosen]
        if importance.needs_gradients(self.importance):
            self._gradients(model, device)
        with torch.enable_grad():  # the dependency graph is traced through autograd
            pruner = tp.pruner.MetaPruner(
                model,
                torch.randn(*self.example_shape, device=device),
                importance=self._criterion(),
                pruning_ratio=0.0,
                pruning_ratio_dict=chosen,
                ignored_layers=list({id(m): m for m in others + classifier(model)}.values()),
            )
            pruner.step()
        model.zero_grad(set_to_none=True)

    def apply(self, model: nn.Module, amount: float, device="cpu") -> None:
        if self.amounts is not None:
            if self.current == 0:
                self._per_layer(model, device)
                self.current = amount
            return
        if self.method == "channel":
            self._channels(model, amount, device)
        else:
            self._unstructured(model, amount)
        log.debug("pruning: %s %s to %.3f", self.method, self.scope, amount)

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint of this fit loads into the model as `setup` leaves it: not when
        channels go in later epochs (steps > 1, or after regularize_epochs), since shapes change."""
        return self.method != "channel" or self.amounts is not None or self.steps + self.regularize_epochs <= 1

    # -- Lightning hooks --------------------------------------------------------------
    def setup(self, trainer, pl_module, stage):
        if stage != "fit":
            return
        self.check(pl_module.model)
        spec.check({**self.settings(), "epochs": trainer.max_epochs or 0})
        dm = trainer.datamodule
        if dm is not None:
            self._batches = lambda: itertools.islice(dm.train_dataloader(), self.taylor_batches)
        if self.regularize_epochs > 0:  # DepGraph's sparsity-inducing group-norm regulariser
            import torch_pruning as tp

            with torch.enable_grad():
                self._regularizer = tp.pruner.GroupNormPruner(
                    pl_module.model,
                    torch.randn(*self.example_shape, device=device_of(pl_module.model)),
                    importance=tp.importance.GroupMagnitudeImportance(p=2),
                    reg=self.reg,
                    ignored_layers=self._ignored(pl_module.model),
                )
        first = self.target(0, trainer.max_epochs or 0)
        if first > 0:
            self.apply(pl_module.model, first, device_of(pl_module.model))

    def on_train_epoch_start(self, trainer, pl_module):
        amount = self.target(trainer.current_epoch, trainer.max_epochs)
        if amount > self.current:
            self.apply(pl_module.model, amount, device_of(pl_module.model))
            if self.method == "channel":  # new shapes: a fresh optimizer (and schedule: a warm restart)
                trainer.strategy.setup_optimizers(trainer)

    def on_after_backward(self, trainer, pl_module):
        if self._regularizer is not None and trainer.current_epoch < self.regularize_epochs:
            self._regularizer.regularize(pl_module.model)

    def on_fit_end(self, trainer, pl_module):
        if self.method != "channel":
            if (
                self.amounts is None and self.current < self.amount
            ):  # a fit shorter than the ramp still ends at the target
                self.apply(pl_module.model, self.amount)
            make_permanent(pl_module.model)

    def summary(self) -> dict:
        out = {"method": self.method, "scope": self.scope, "schedule": self.schedule, "amount": self.amount}
        if self.method == "channel":
            out.update(importance=self.importance, steps=self.steps, regularize_epochs=self.regularize_epochs)
        if self.amounts is not None:
            out.update(scope="per-layer", amount=None, amounts=dict(self.amounts))
        return out
