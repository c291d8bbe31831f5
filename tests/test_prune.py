"""Pruning: masks against torch.nn.utils.prune, exact per-layer amounts, channel pruning and reload, the schedule."""

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from compressor import measure
from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN
from compressor.models.torchvision_nets import resnet18
from compressor.storage import artifact
from compressor.techniques.layers import make_permanent
from compressor.techniques.prune.callback import Pruning
from compressor.techniques.prune.schedule import cubic, lamp_counts
from tests.conftest import run_job


def net():
    torch.manual_seed(0)
    return SimpleCNN(1, 10, 28)


def weights(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_global_l1_masks_equal_torch_global_unstructured():
    ours, theirs = net(), net()
    Pruning(amount=0.4, method="l1_unstructured", scope="global").apply(ours, 0.4)
    tprune.global_unstructured([(m, "weight") for m in weights(theirs).values()], tprune.L1Unstructured, amount=0.4)
    for name, m in weights(ours).items():
        assert torch.equal(m.weight_mask, weights(theirs)[name].weight_mask), name


def test_lamp_prunes_the_lowest_scores_of_the_paper():
    """LAMP (Lee et al. 2021): score(u) = w_u^2 / sum of w_v^2 over the weights v of u's layer with
    |w_v| >= |w_u|, written here as a loop over weights; the lowest scores go, across layers."""
    torch.manual_seed(0)
    layers = {"small": torch.randn(6) * 0.01, "big": torch.randn(40)}
    scored = []
    for name, w in layers.items():
        for u in w.tolist():
            scored.append((u * u / sum(v * v for v in w.tolist() if abs(v) >= abs(u)), name))
    for amount in (0.2, 0.5, 0.8):
        k = round(amount * 46)
        want = {n: sum(1 for _, m in sorted(scored)[:k] if m == n) for n in layers}
        assert lamp_counts(layers, amount) == want
    # a global magnitude ranking would empty the small layer first; LAMP keeps its largest weight
    assert lamp_counts(layers, 0.8)["small"] < 6


def test_lamp_scope_keeps_earlier_zeros_and_prunes_by_magnitude_within_a_layer():
    model = net()
    cb = Pruning(amount=0.9, scope="lamp", schedule="cubic")
    cb.apply(model, 0.5)
    make_permanent(model)
    first = {n: (m.weight == 0).clone() for n, m in weights(model).items()}
    cb.apply(model, 0.9)
    make_permanent(model)
    assert measure.parameters(model)["compress/sparsity"] == pytest.approx(0.9, abs=0.01)
    for name, m in weights(model).items():
        assert (m.weight[first[name]] == 0).all(), name
        kept, gone = m.weight[m.weight != 0].abs(), net().get_submodule(name).weight[m.weight == 0].abs()
        assert kept.numel() > 0 and (gone.numel() == 0 or gone.max() <= kept.min()), name


@pytest.mark.parametrize("amount", [0.1, 0.3, 0.7])
def test_per_layer_amounts_are_exact(amount):
    model = net()
    Pruning(amount=amount, scope="layer").apply(model, amount)
    make_permanent(model)
    for name, m in weights(model).items():
        zeros = int((m.weight == 0).sum())
        assert zeros == round(amount * m.weight.numel()), name


def test_gradual_pruning_keeps_earlier_zeros_and_ends_permanent():
    model = net()
    cb = Pruning(amount=0.8, schedule="cubic")
    cb.apply(model, cubic(1, 0.8, 3))
    make_permanent(model)
    first = {n: (m.weight == 0).clone() for n, m in weights(model).items()}
    cb.apply(model, 0.8)
    make_permanent(model)
    for name, m in weights(model).items():
        assert (m.weight[first[name]] == 0).all()
        assert not hasattr(m, "weight_mask") and not m._forward_pre_hooks
    assert measure.parameters(model)["compress/sparsity"] > 0.75


def test_cubic_schedule_hits_its_endpoints():
    assert cubic(0, 0.9, 10) == 0.0
    assert cubic(10, 0.9, 10) == pytest.approx(0.9)
    assert cubic(25, 0.9, 10) == pytest.approx(0.9)
    values = [cubic(e, 0.9, 10) for e in range(11)]
    assert values == sorted(values)
    assert values[1] - values[0] > values[10] - values[9]  # prunes fast early, slowly late


def test_channel_pruned_resnet18_runs_and_reloads(tmp_path):
    model = resnet18(3, 10, 32).eval()
    before = measure.macs(model, torch.randn(1, 3, 32, 32))
    Pruning(amount=0.5, method="channel", example_shape=[1, 3, 32, 32]).apply(model, 0.5)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert model.layer1[0].conv1.out_channels < 64
    assert measure.macs(model, x) < 0.5 * before
    path = artifact.save(
        model,
        tmp_path / "model.safetensors",
        {
            "_target_": "compressor.models.torchvision_nets.resnet18",
            "in_channels": 3,
            "num_classes": 10,
            "image_size": 32,
        },
        [],
    )
    again = artifact.load(path)
    assert torch.allclose(again(x), out, atol=1e-5)


def test_sparse_artifact_is_small_and_exact(tmp_path):
    model = net()
    arch = {"_target_": "compressor.models.cnn.SimpleCNN", "in_channels": 1, "num_classes": 10, "image_size": 28}
    dense = artifact.save(model, tmp_path / "dense.safetensors", arch, [])
    Pruning(amount=0.9).apply(model, 0.9)
    make_permanent(model)
    sparse = artifact.save(model, tmp_path / "sparse.safetensors", arch, [])
    assert measure.size_mb(dense) / measure.size_mb(sparse) > 5
    again = artifact.load(sparse).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(again(x), model.eval()(x))


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(amount=1.0), "technique.amount"),
        (dict(amount=-0.1), "technique.amount"),
        (dict(method="magic"), "technique.method"),
        (dict(scope="all"), "technique.scope"),
        (dict(scope="lamp", method="channel"), "technique.scope=lamp"),
        (dict(method="channel", schedule="cubic"), "technique.schedule"),
    ],
)
def test_bad_arguments_are_one_line_errors(kw, key):
    with pytest.raises(ConfigError, match=key) as err:
        Pruning(**kw)
    assert "\n" not in str(err.value)


def test_glob_matching_nothing_lists_layers():
    with pytest.raises(ConfigError, match="features.0") as err:
        Pruning(include=["encoder.*"]).check(net())
    assert "encoder.*" in str(err.value)


def test_prune_job_end_to_end(tmp_path):
    r = run_job(
        tmp_path, ["technique=prune", "technique.amount=0.6", "technique.epochs=1", "technique.include=[features.*]"]
    )
    assert r["run"]["label"] == "prune l1_unstructured global oneshot 0.6"
    layers = r["stages"][0]["layer_sparsity"]
    assert layers["classifier.0"] == 0.0 and layers["features.4"] > 0.3
    assert r["compress/nonzero_params"] < r["baseline"]["compress/nonzero_params"]
    model = artifact.load(tmp_path / "outputs" / "run" / "model.safetensors")
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


@pytest.mark.parametrize(
    "epoch,expected",
    [(1, 0.9 * (1 - 0.9**3)), (3, 0.9 * (1 - 0.7**3)), (5, 0.9 * (1 - 0.5**3)), (8, 0.9 * (1 - 0.2**3))],
)
def test_cubic_schedule_at_interior_epochs(epoch, expected):
    """Zhu & Gupta's formula between its ends, and the callback prunes the model to exactly it."""
    from types import SimpleNamespace

    assert cubic(epoch, 0.9, 10) == pytest.approx(expected, abs=1e-12)
    cb = Pruning(amount=0.9, schedule="cubic", ramp_epochs=10)
    assert cb.target(epoch, 20) == pytest.approx(expected, abs=1e-12)
    model = net()
    module = SimpleNamespace(model=model, device="cpu")
    cb.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, max_epochs=20), module)
    total = sum(m.weight.numel() for m in weights(model).values())
    zeros = sum(int((m.weight == 0).sum()) for m in weights(model).values())
    assert zeros / total == pytest.approx(expected, abs=1 / total + 1e-9)


CRITERION = '''
import torch_pruning as tp

USED = []


def last_first():
    """A criterion of a user's own: the highest-numbered channels of each layer go first."""
    class LastFirst(tp.importance.Importance):
        def __call__(self, group):
            USED.append(len(group))
            _, idxs = group[0]
            return -torch.arange(len(idxs), dtype=torch.float32)

    import torch
    return LastFirst()
'''


def test_a_pruning_criterion_of_your_own_is_one_function_named_by_its_import_path(tmp_path, monkeypatch):
    """Issue 56: a criterion added as one function in a module of the user's own (nothing in the
    package touched) is used by technique=prune: it scores the groups, and channels go."""
    import importlib

    (tmp_path / "my_criteria.py").write_text(CRITERION)
    monkeypatch.syspath_prepend(str(tmp_path))
    r = run_job(
        tmp_path,
        [
            "technique=prune",
            "technique.method=channel",
            "technique.amount=0.5",
            "technique.importance=my_criteria.last_first",
        ],
    )
    mine = importlib.import_module("my_criteria")
    assert mine.USED, "the criterion was called"
    model = artifact.load(r["run"]["run_dir"] + "/model.safetensors")
    baseline = artifact.load(r["baseline"]["cache_entry"] + "/model.safetensors")
    assert measure.parameters(model)["compress/params"] < measure.parameters(baseline)["compress/params"]
    assert r["stages"][0]["importance"] == "my_criteria.last_first"


def test_a_criterion_that_cannot_be_imported_is_one_line():
    from compressor.techniques.prune import importance

    with pytest.raises(ConfigError, match=r"technique.importance=nowhere.thing: cannot import it .*choose one of l1"):
        importance.named("nowhere.thing")
    assert not importance.valid("nope") and importance.valid("pkg.fn") and importance.valid("taylor")
