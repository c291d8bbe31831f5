"""Each seed study's preset, at smoke scale on embedded data, through the command line."""

import json

import pytest

from tests.conftest import CONF

PRESETS = {  # preset -> (techniques its sweep runs, the teacher/baseline model, the KD student)
    "seed000_rvl_cdip": ({"baseline", "quant", "kd"}, "simple_cnn", "small_cnn"),
    "seed001_cifar10_resnet18": ({"baseline", "pipeline"}, "resnet18", "resnet_student"),
    "seed002_cifar10_deepnn": ({"kd"}, "deep_nn", "light_nn"),
    "seed003_mnist_kl": ({"baseline", "kd"}, "mnist_cnn", "mnist_mlp"),
    "seed004_cifar10_resnet50": ({"baseline", "prune", "quant", "kd"}, "resnet50", "mobilenet_v2"),
    "lite0_fashion": ({"baseline", "prune", "quant", "kd"}, "efficientnet_lite0", "small_cnn"),
}


# ResNet-50, ResNet-18 and DeepNN at smoke scale take 50-100 s each on 2 cores: make test-all runs them
SLOW = {"seed001_cifar10_resnet18", "seed002_cifar10_deepnn", "seed004_cifar10_resnet50"}


def test_every_preset_is_covered():
    assert {p.stem for p in (CONF / "experiment").glob("*.yaml")} == set(PRESETS)


@pytest.mark.parametrize(
    "preset", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW else p for p in sorted(PRESETS)]
)
def test_preset_at_smoke_scale(cli, tmp_path, preset):
    techniques, teacher, student = PRESETS[preset]
    proc = cli("-m", f"+experiment={preset}", "+smoke=tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = tmp_path / "outputs" / "studies" / (preset if preset.startswith("lite0") else preset[:7])
    found = [json.loads(p.read_text()) for p in study.rglob("results.json")]
    assert {r["run"]["technique"] for r in found} == techniques
    for r in found:
        assert r["run"]["dataset"] == "digits"
        assert r["baseline"]["model"] == teacher
        if r["run"]["technique"] in ("kd", "pipeline"):
            assert r["run"]["model"] == student and r["run"]["teacher"] == teacher
    (sweep,) = study.iterdir()
    assert (sweep / "summary.md").is_file() and (sweep / "acc_vs_size.png").is_file()


@pytest.mark.slow  # 35 s: the DeepNN preset again, swept over two losses
def test_seed002_sweeps_the_three_losses(cli, tmp_path):
    proc = cli("-m", "+experiment=seed002_cifar10_deepnn", "+smoke=tiny", "technique.loss=ce,cosine", "export=onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("results.json")]
    assert sorted(r["run"]["label"] for r in found) == ["kd ce from deep_nn", "kd cosine from deep_nn"]
    assert all(r["export"]["onnxruntime"]["fp32"]["agreement"] >= 0.995 for r in found)
