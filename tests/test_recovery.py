"""Recovery that recovers (issue 57): a stage's fine-tune stops once validation is back within the
budget, or after `patience` epochs without a better one (keeping the best), counts only epochs where
the technique has finished changing the model, and a killed recovery resumes with its counts."""

import io
from types import SimpleNamespace

import torch
from torch import nn

from compressor import baseline
from compressor.techniques.prune.callback import Pruning
from compressor.training.recovery import Recovery
from tests.conftest import make_cfg, run_job


class Scripted(Recovery):
    """Reads its validation accuracies from a list, one per epoch."""

    def __init__(self, accs, **kwargs):
        super().__init__(**kwargs)
        self.accs = list(accs)

    def accuracy(self, trainer, pl_module):
        return self.accs[trainer.current_epoch]


def epochs(recovery, n, technique=None):
    """Runs `recovery` over up to `n` epochs as a fit would; the epochs run and the module."""
    module = SimpleNamespace(weight=0.0)
    module.state_dict = lambda: {"w": torch.tensor([module.weight])}
    module.load_state_dict = lambda state: setattr(module, "weight", float(state["w"][0]))
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=False: decision)
    trainer = SimpleNamespace(should_stop=False, sanity_checking=False, max_epochs=n, strategy=strategy)
    recovery.technique = technique
    recovery.on_train_start(trainer, module)
    run = 0
    for epoch in range(n):
        if trainer.should_stop:
            break
        trainer.current_epoch, module.weight = epoch, float(epoch)
        recovery.on_validation_end(trainer, module)
        run += 1
    recovery.on_fit_end(trainer, module)
    return run, module


def test_recovery_stops_once_back_within_the_budget():
    stops = Scripted([0.80, 0.85, 0.91, 0.95, 0.96], floor=0.90, stop_within=True)
    run, module = epochs(stops, 5)
    assert run == 3 and stops.summary()["recovery/stopped"] == "within"
    assert module.weight == 2.0  # the epoch that came back within is the one kept
    never = Scripted([0.80, 0.85, 0.91], floor=None, stop_within=True)  # no budget: nothing to stop at
    assert epochs(never, 3)[0] == 3 and never.summary() == {}


def test_patience_stops_and_keeps_the_best_epoch():
    stops = Scripted([0.80, 0.86, 0.85, 0.84, 0.90], patience=2)
    run, module = epochs(stops, 5)
    assert run == 4 and stops.summary() == {
        "recovery/best_epoch": 2,
        "recovery/stopped": "plateau",
        "recovery/val_acc": 0.86,
    }
    assert module.weight == 1.0  # restored to the best epoch's weights


def test_a_killed_recovery_resumes_with_its_counts_and_stops_where_it_had():
    first = Scripted([0.80, 0.86, 0.85, 0.84], patience=2)
    epochs(first, 3)  # killed after epoch 3 (one epoch without a better accuracy)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # into a checkpoint and out again, without pickle
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    again = Scripted([0.80, 0.86, 0.85, 0.84], patience=2)
    again.load_state_dict(state)
    assert (again.best, again.wait) == (0.86, 1)
    stopped = Scripted([], patience=2)
    stopped.load_state_dict({**state, "stopped": "plateau"})
    assert epochs(stopped, 4)[0] == 0  # its stop came before the kill: the resumed fit ends at once


def test_only_settled_epochs_count():
    """Channels in two steps: the epochs before the second step can be neither the best nor a stop."""
    pruning = Pruning(amount=0.5, method="channel", steps=2, example_shape=[1, 1, 8, 8])
    assert [pruning.settled(e, 4) for e in range(4)] == [False, False, True, True]
    stops = Scripted([0.95, 0.96, 0.80, 0.82], floor=0.90, stop_within=True, patience=1)
    run, module = epochs(stops, 4, technique=pruning)
    assert run == 4 and stops.summary()["recovery/best_epoch"] == 4 and module.weight == 3.0


def test_a_stage_stops_within_its_budget_end_to_end(tmp_path):
    """technique=prune under budget.max_drop with per-layer amounts (checked, not searched): the
    fine-tune stops at the first epoch whose selection accuracy is within the floor."""
    r = run_job(
        tmp_path,
        [
            "technique=prune",
            "technique.method=channel",
            "+technique.amounts={features.0: 0.25}",
            "technique.epochs=4",
            "technique.stop_within=true",
            "budget.max_drop=90",
        ],
    )
    (stage,) = r["stages"]
    assert stage["recovery/stopped"] == "within" and stage["recovery/best_epoch"] == 1
    assert len(stage["val/acc_per_epoch"]) == 1


def test_the_new_keys_at_their_defaults_keep_every_stage_key(tmp_path):
    cfg = make_cfg(tmp_path, ["technique=prune"])
    spec = baseline.plain(cfg)
    for key in ("patience", "stop_within"):
        del spec["technique"][key]
    data = {"data": "fingerprint"}
    assert baseline.fingerprint(cfg, data) == baseline.fingerprint(baseline.OmegaConf.create(spec), data)
    patient = make_cfg(tmp_path, ["technique=prune", "technique.patience=2"])
    assert baseline.fingerprint(patient, data) != baseline.fingerprint(cfg, data)


def test_recovery_reads_the_loader_it_is_given():
    layers = nn.Linear(2, 2)
    loader = [(torch.eye(2), torch.tensor([0, 1]))]
    layers.weight.data = torch.eye(2)
    layers.bias.data.zero_()
    module = SimpleNamespace(model=layers)
    assert Recovery(loader=loader).accuracy(None, module) == 1.0


def test_a_layer_that_costs_more_latency_per_channel_loses_more_channels(monkeypatch):
    """technique.cost=latency_b1: the budget's knapsack reads the per-layer latency table, not MACs.
    Here a channel of features.4 costs 20 times the time of any other (a timer that counts channels,
    so the test times nothing), and every layer's drop is the same: its channels go first, where by
    MACs features.8's (the most MACs per channel) would."""
    from compressor import measure
    from compressor.models.cnn import SimpleCNN
    from compressor.techniques.prune.budget import steps
    from compressor.techniques.prune.scan import prune_scan

    weight = {"features.0": 1.0, "features.4": 20.0, "features.8": 1.0, "classifier.0": 1.0}

    def timer(models, example, batch, threads, count):
        def ms(m):
            return sum(w * dict(m.named_modules())[n].weight.shape[0] for n, w in weight.items())

        return {name: [ms(m)] * count for name, m in models.items()}

    monkeypatch.setattr(measure, "rounds", timer)
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)  # every layer costs the same drop
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()
    grid = [0.25, 0.5, 0.75]
    layers = list(weight)

    def first_raised(cost):
        rows = prune_scan(model, None, layers, grid, ["channel"], [1, 1, 8, 8], cost)
        (_, recipe), *_ = steps(rows)
        return next(n for n, a in recipe.items() if a > 0)

    assert first_raised("latency_b1") == "features.4"
    assert first_raised("macs") != "features.4"
    rows = prune_scan(model, None, layers, grid, ["channel"], [1, 1, 8, 8], "latency_b1")
    half = steps(rows)[len(grid) - 1][1]  # after as many steps as the grid has amounts
    assert half["features.4"] == max(grid) and all(half[n] == 0 for n in layers if n != "features.4")
