"""Weight sharing (technique=cluster): k-means into 2**bits shared values per layer, fine-tuned,
stored as a codebook and coded indices that load without pickle and compound with pruning."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from compressor.measure import accuracy_of as accuracy
from compressor.models.cnn import SimpleCNN
from compressor.storage import artifact, checkpoint
from compressor.techniques.cluster.callback import kmeans
from tests.conftest import make_cfg, run_job

ARCH = {"_target_": "compressor.models.cnn.SimpleCNN", "in_channels": 1, "num_classes": 10, "image_size": 8}


def layers(model):
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def shared_values(w: torch.Tensor) -> int:
    return torch.unique(w[w != 0]).numel()


def test_kmeans_is_1d_lloyd_from_a_linear_start():
    values = torch.tensor([0.0, 0.1, 0.2, 5.0, 5.2, 10.0])
    centroids, index = kmeans(values, 3)
    assert torch.allclose(centroids, torch.tensor([0.1, 5.1, 10.0])) and index.tolist() == [0, 0, 0, 1, 1, 2]
    centroids, index = kmeans(torch.randn(5000, generator=torch.Generator().manual_seed(0)), 16)
    assert centroids.numel() == 16 and bool((centroids[1:] > centroids[:-1]).all()) and index.max() == 15


def reload(tmp_path, r, monkeypatch):
    def no_pickle(*a, **k):
        raise AssertionError("loading a clustered artifact used pickle")

    with monkeypatch.context() as m:
        m.setattr(torch, "load", no_pickle)
        m.setattr(pickle, "loads", no_pickle)
        return checkpoint.load(Path(r["run"]["run_dir"]) / artifact.FILENAME, "model.checkpoint").eval()


def test_cluster_shares_fine_tunes_and_reloads_without_pickle(tmp_path, monkeypatch):
    r = run_job(tmp_path, ["technique=cluster", "technique.bits=3", "technique.epochs=1"], "cluster3")
    model = reload(tmp_path, r, monkeypatch)
    assert all(shared_values(w) <= 8 for w in layers(model).values())
    assert r["stages"][0]["shared_values"] and set(r["stages"][0]["shared_values"].values()) <= set(range(1, 9))
    dm = instantiate(make_cfg(tmp_path).dataset)
    dm.setup()
    assert accuracy(model, dm.test_dataloader()) == pytest.approx(r["test/acc"], abs=1e-6)  # the file is the model
    assert r["baseline"]["test/acc"] - r["test/acc"] < 0.05
    # with no fine-tune the shared values are the k-means centroids of the baseline's weights; with
    # one, the fine-tune has moved them
    r0 = run_job(tmp_path, ["technique=cluster", "technique.bits=3", "technique.epochs=0"], "cluster3_share_only")
    base = layers(artifact.load(Path(r["baseline"]["cache_entry"]) / artifact.FILENAME))
    for name, w in layers(reload(tmp_path, r0, monkeypatch)).items():
        assert torch.equal(torch.unique(w), torch.unique(kmeans(base[name].flatten(), 8)[0])), name
    tuned = layers(model)
    assert any(
        not torch.equal(torch.unique(tuned[n]), torch.unique(w))
        for n, w in layers(reload(tmp_path, r0, monkeypatch)).items()
    )


@pytest.mark.slow  # 70 s: a pipeline of prune and cluster fine-tunes (make test-all)
def test_after_pruning_the_zeros_stay_and_the_sizes_compound(tmp_path, monkeypatch):
    prune = run_job(tmp_path, ["technique=prune", "technique.amount=0.8", "technique.epochs=1"], "prune")
    both = run_job(
        tmp_path,
        [
            "technique=pipeline",
            "technique.order=[prune,cluster]",
            "model=simple_cnn",
            "technique.prune.amount=0.8",
            "technique.prune.epochs=1",
            "technique.cluster.epochs=1",
        ],
        "prune_cluster",
    )
    assert both["compress/sparsity"] == pytest.approx(prune["compress/sparsity"])  # sharing keeps every zero
    assert both["compress/size_mb"] < prune["compress/size_mb"] / 3
    assert all(shared_values(w) <= 16 for w in layers(reload(tmp_path, both, monkeypatch)).values())
    assert both["run"]["label"] == "prune l1_unstructured global oneshot 0.8 + cluster 4 bits"


def test_the_file_shrinks_with_bits_and_sparsity_and_reloads_exactly(tmp_path):
    from torch.nn.utils import parametrize

    from compressor.techniques.cluster.callback import Shared

    def clustered(bits, sparsity):
        model = SimpleCNN(1, 10, 8)
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                w = layer.weight.detach()
                if sparsity:
                    w[w.abs() < w.abs().flatten().kthvalue(int(sparsity * w.numel())).values] = 0
                parametrize.register_parametrization(layer, "weight", Shared(w, 2**bits))
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        return model.eval()

    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    size = {}
    for bits in (8, 4, 2):
        for sparsity in (0, 0.9):
            model = clustered(bits, sparsity)
            path = artifact.save(model, tmp_path / f"{bits}_{sparsity}.safetensors", ARCH, [])
            assert torch.equal(artifact.load(path).eval()(x), model(x))
            size[bits, sparsity] = os.path.getsize(path)
    dense = os.path.getsize(artifact.save(SimpleCNN(1, 10, 8), tmp_path / "float.safetensors", ARCH, []))
    assert dense > size[8, 0] > size[4, 0] > size[2, 0]
    assert size[4, 0] < dense / 7 and size[4, 0.9] < dense / 25  # 32 -> 4 bits, then the zeros' mask
    assert all(size[b, 0.9] < size[b, 0] for b in (8, 4, 2))
