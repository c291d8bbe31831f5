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


def test_the_fewest_steps_that_reach_the_measured_speedup(monkeypatch):
    """On a latency table where features.4's channels cost the time, the target is reached by cutting
    them, and by no more steps than it takes: one step fewer falls short."""
    monkeypatch.setattr(measure, "rounds", counted)
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()
    node = Node(include=["*"], exclude=[], cost="latency_b1", speedup=1.5)
    found = target.search(node, model, None, [1, 1, 8, 8], [0.25, 0.5, 0.75])
    assert found["reached"] and found["ratio"] >= 1.5 and found["steps"] >= 2
    cut = {n: a for n, a in found["amounts"].items() if a > 0}
    assert set(cut) == {"features.4"}
    fewer = target.steps(
        target.prune_scan(model, None, list(WEIGHT), [0.25, 0.5, 0.75], ["channel"], [1, 1, 8, 8], "latency_b1")
    )
    before = fewer[found["steps"] - 2][1]
    shorter = target.pruned(model, "channel", before, [1, 1, 8, 8])
    assert target.ratio("latency_b1", model, shorter, [1, 1, 8, 8]) < 1.5


def test_a_speedup_out_of_reach_keeps_the_most_pruned_and_says_so(monkeypatch):
    monkeypatch.setattr(measure, "accuracy_of", lambda model, loader: 0.9)
    model = SimpleCNN(1, 10, 8).eval()
    node = Node(include=["features.8"], exclude=[], cost="macs", speedup=50.0)
    found = target.search(node, model, None, [1, 1, 8, 8], [0.25, 0.5])
    assert not found["reached"] and found["amounts"] == {"features.8": 0.5} and 1 < found["ratio"] < 50


def test_a_job_reaches_its_speedup_and_a_rerun_reuses_the_amounts(tmp_path, monkeypatch):
    args = ["technique=prune", "technique.method=channel", "technique.speedup=2", "technique.epochs=1"]
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
