"""technique.speedup (issue 57): channel amounts chosen per layer until the model is that many times
cheaper by technique.cost (MACs, or measured latency), the same amounts on a resumed or repeated job."""

import json

import pytest
import torch

from compressor import measure
from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN
from compressor.techniques.prune import target
from compressor.techniques.prune.callback import Pruning
from tests.conftest import run_job

WEIGHT = {"features.0": 1.0, "features.4": 20.0, "features.8": 1.0, "classifier.0": 1.0}


def counted(models, example, batch, threads=1, reps=20, count=5):
    """A timer that counts channels (features.4's costing 20 times any other's): times nothing."""

    def ms(m):
        return sum(w * dict(m.named_modules())[n].weight.shape[0] for n, w in WEIGHT.items())

    return {name: [ms(m)] * count for name, m in models.items()}


class Node(dict):
    __getattr__ = dict.get


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """Fewer and shorter NetAdapt steps: what is tested is which layer each step cuts."""
    monkeypatch.setattr(target, "ITERATIONS", 4)
    monkeypatch.setattr(target, "SHORT", 2)


OPTIM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9}
BATCHES = [(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))]  # a short fine-tune's training data


def test_a_layer_whose_channels_cost_more_latency_loses_them_first(monkeypatch):
    """On a latency table where features.4's channels cost the time and every proposal measures the
    same validation accuracy, NetAdapt's steps cut features.4 alone, and no further than the target
    asks: one channel more kept falls short."""
    monkeypatch.setattr(measure, "rounds", counted)
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()
    node = Node(include=["*"], exclude=[], cost="latency_b1", speedup=1.5)
    found = target.search(node, model, BATCHES, None, [1, 1, 8, 8], OPTIM)
    assert found["reached"] and found["ratio"] >= 1.5 and found["iterations"] == target.ITERATIONS
    assert {n for n, a in found["amounts"].items() if a > 0} == {"features.4"}
    kept = round(64 * (1 - found["amounts"]["features.4"]))
    one_more = target.pruned(model, "channel", {"features.4": (64 - kept - 1) / 64}, [1, 1, 8, 8])
    assert target.ratio("latency_b1", model, one_more, [1, 1, 8, 8]) < 1.5


def test_the_most_accurate_proposal_wins(monkeypatch):
    """Where cutting features.8 keeps validation accuracy and cutting any other layer loses it,
    every step cuts features.8 (MACs here: no timing)."""
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()

    def accuracy(candidate, loader):
        widths = {n: m.weight.shape[0] for n, m in candidate.named_modules() if n in ("features.0", "features.4")}
        return 0.9 if widths == {"features.0": 32, "features.4": 64} else 0.5

    monkeypatch.setattr(measure, "accuracy_of", accuracy)
    node = Node(include=["features.0", "features.4", "features.8"], exclude=[], cost="macs", speedup=1.3)
    found = target.search(node, model, BATCHES, None, [1, 1, 8, 8], OPTIM)
    assert found["reached"] and {n for n, a in found["amounts"].items() if a > 0} == {"features.8"}
    assert all(step["layer"] == "features.8" and step["val/acc"] == 0.9 for step in found["trail"])


def test_a_speedup_out_of_reach_keeps_what_it_reached_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)
    model = SimpleCNN(1, 10, 8).eval()
    node = Node(include=["features.0"], exclude=[], cost="macs", speedup=50.0)
    found = target.search(node, model, BATCHES, None, [1, 1, 8, 8], OPTIM)
    assert not found["reached"] and 1 <= found["ratio"] < 50 and set(found["amounts"]) == {"features.0"}
    assert "technique.speedup=50: no layer" in caplog.text


def test_a_job_reaches_its_speedup_and_a_rerun_reuses_the_amounts(tmp_path, monkeypatch):
    args = [
        "technique=prune",
        "technique.method=channel",
        "technique.speedup=2",
        "technique.epochs=1",
        "technique.include=[features.4,features.8,classifier.0]",
    ]
    r = run_job(tmp_path, args)
    (stage,) = r["stages"]
    chosen = stage["speedup"]
    assert chosen["reached"] and chosen["cost"] == "macs"
    assert r["baseline"]["compress/macs"] / r["compress/macs"] >= 2
    assert len({a for a in chosen["amounts"].values()}) > 1, "per-layer amounts, not one fraction"
    saved = list((tmp_path / "outputs").rglob(target.FILE))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["amounts"] == chosen["amounts"]
    monkeypatch.setattr(
        target, "search", lambda *a, **k: pytest.fail("searched again; the saved amounts were not reused")
    )
    again = run_job(tmp_path, args, run_name="again")
    assert again["stages"][0]["speedup"]["amounts"] == chosen["amounts"]


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(speedup=1.0, method="channel"), "technique.speedup"),
        (dict(speedup=2.0), "technique.speedup applies to technique.method=channel"),
        (dict(speedup=2.0, method="channel", amounts={"features.0": 0.5}), "technique.amounts with technique.speedup"),
    ],
)
def test_bad_speedups_are_one_line_errors(kw, key):
    with pytest.raises(ConfigError, match=key) as err:
        Pruning(**kw)
    assert "\n" not in str(err.value)


def test_with_round_to_netadapt_tries_only_multiples_of_it(monkeypatch):
    """technique.round_to=16: the widths NetAdapt keeps are multiples of 16 (XNNPACK's int8 convolutions
    run 16 channels at a time, so a 33rd channel costs as much as 16 more)."""
    monkeypatch.setattr(measure, "rounds", counted)
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()
    node = Node(include=["*"], exclude=[], cost="latency_b1", speedup=1.5, round_to=16)
    found = target.search(node, model, BATCHES, None, [1, 1, 8, 8], OPTIM)
    kept = round(64 * (1 - found["amounts"]["features.4"]))
    assert found["reached"] and kept % 16 == 0 and kept < 64


@pytest.mark.parametrize(
    "settings, widths",
    [
        ({"amount": 0.5}, [16, 32, 64]),  # already multiples of 16
        ({"amount": 0.6}, [16, 32, 48]),  # 12.8 -> 16, 25.6 -> 32, 51.2 -> 48 (nearest multiples)
        ({"amount": 0.8}, [16, 16, 32]),  # never below 16
        ({"amounts": {"features.4": 0.3, "features.8": 0.1}}, [32, 48, 112]),  # 44.8 -> 48, 115.2 -> 112
    ],
)
def test_round_to_keeps_every_pruned_layer_a_multiple_of_it(settings, widths):
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 28)
    pruning = Pruning(method="channel", round_to=16, example_shape=(1, 1, 28, 28), **settings)
    pruning.apply(model, settings.get("amount", 0.5))
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == widths
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_round_to_with_a_global_ranking_is_one_line():
    with pytest.raises(ConfigError, match="round_to with technique.scope=global"):
        Pruning(method="channel", scope="global", round_to=16, example_shape=(1, 1, 28, 28))
