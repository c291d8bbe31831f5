"""N:M semi-structured sparsity (technique=nm): n of every m consecutive input weights kept, the
pattern fixed through the fine-tune, the saved file a plain float model holding that pattern."""

from pathlib import Path

import pytest
import torch
from torch import nn

from compressor.errors import ConfigError
from compressor.storage import artifact, checkpoint
from compressor.techniques.nm.callback import NMSparsity, groups_of, nm_mask
from tests.conftest import run_job


def test_the_mask_keeps_the_n_largest_of_each_m_inputs_of_a_conv_along_its_channels():
    w = torch.randn(8, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    mask = nm_mask(w, 2, 4)
    groups, kept = groups_of(w, 4), groups_of(mask, 4)  # rows of 4 consecutive input channels
    assert kept.sum(1).eq(2).all()
    smallest_kept = (groups.abs() * kept + (1 - kept) * 1e9).min(1).values
    largest_dropped = (groups.abs() * (1 - kept)).max(1).values
    assert (smallest_kept >= largest_dropped).all()
    assert torch.equal(mask[:, 0:4].sum(1), torch.full((8, 3, 3), 2.0))  # channels 0-3 at one position: 2 kept
    assert nm_mask(torch.randn(4, 6), 2, 4) is None  # 6 inputs do not split into groups of 4
    assert nm_mask(torch.randn(4, 8), 1, 4).sum() == 4 * 2


def test_bad_arguments_name_the_key():
    with pytest.raises(ConfigError, match="technique.n=4 with technique.m=4"):
        NMSparsity(n=4, m=4)
    with pytest.raises(ConfigError, match="technique.m"):
        NMSparsity(m=1)


def test_nm_fine_tunes_with_the_pattern_fixed_and_the_file_holds_it(tmp_path):
    r = run_job(tmp_path, ["technique=nm", "technique.epochs=1"], "nm")
    stage = r["stages"][0]
    assert stage["skipped"] == ["features.0"] and len(stage["layers"]) == 4  # 1 input channel: no groups of 4
    assert r["run"]["label"] == "nm 2:4"
    model = checkpoint.load(Path(r["run"]["run_dir"]) / artifact.FILENAME, "model.checkpoint")
    layers = dict(model.named_modules())
    for name in stage["layers"]:
        weight = layers[name].weight.detach()
        assert groups_of(weight, 4).ne(0).sum(1).le(2).all(), name
        assert not hasattr(layers[name], "weight_mask")  # folded in: a plain float model
    assert layers["features.0"].weight.ne(0).all()
    assert 0.45 < r["compress/sparsity"] < 0.5
    assert r["compress/size_mb"] < 0.6 * r["baseline"]["compress/size_mb"]
    assert r["baseline"]["test/acc"] - r["test/acc"] < 0.05


def test_a_depthwise_conv_is_skipped_and_a_net_with_nothing_to_mask_is_refused():
    net = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 1))
    cb = NMSparsity()
    cb.apply(net)
    assert cb.skipped == ["0"] and cb.masked == ["1"]
    with pytest.raises(ConfigError, match="technique.m=4: no chosen layer's inputs split into groups of 4"):
        NMSparsity().check(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(6, 10)))
