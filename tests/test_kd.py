"""Distillation end to end on digits, and the teacher cache."""

import json
import threading

import pytest
import torch

from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN, SmallCNN
from compressor.modules import Distiller
from compressor.modules.losses import Tap
from compressor.storage import cache
from tests.conftest import make_cfg, run_job


@pytest.mark.parametrize("loss", ["kl", "cosine", "feature_mse", "dkd"])
def test_kd_trains_against_the_teacher_and_reuses_it(tmp_path, loss):
    first = run_job(tmp_path, ["technique=kd", f"technique.loss={loss}", "technique.epochs=1"], "first", fresh=True)
    assert first["run"]["teacher"] == "simple_cnn" and first["run"]["model"] == "small_cnn"
    assert first["baseline"]["trained_now"] is True
    assert 0 <= first["kd"]["test/agreement"] <= 1
    assert first["kd"]["teacher/test_acc"] == first["baseline"]["test/acc"]
    logged = first["stages"][0]["weights"]
    assert loss in logged
    # a second KD run with the same teacher config does not train the teacher again
    second = run_job(tmp_path, ["technique=kd", "technique.loss=ce", "technique.epochs=1"], "second")
    assert second["baseline"]["trained_now"] is False
    assert second["baseline"]["cache_entry"] == first["baseline"]["cache_entry"]


def test_teacher_is_frozen_and_terms_are_logged():
    torch.manual_seed(0)
    teacher, student = SimpleCNN(1, 10, 8), SmallCNN(1, 10, 8)
    kd = Distiller(
        student,
        teacher,
        torch.randn(2, 1, 8, 8),
        {"ce": 0.5, "kl": 0.3, "cosine": 0.1, "feature_mse": 0.1},
        temperature=4.0,
        num_classes=10,
    )
    kd.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    terms = kd.loss_terms(
        student(torch.randn(4, 1, 8, 8)), teacher(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3])
    )
    assert set(terms) == {"ce", "kl", "cosine", "feature_mse"}
    # the projection/regressor are learned parameters of the distiller, not of the student
    assert isinstance(kd.adapters["hidden"], torch.nn.Linear)
    assert any(p.requires_grad for p in kd.adapters.parameters())


def test_unknown_module_path_lists_module_names():
    with pytest.raises(ConfigError, match="technique.student_hidden='features.99'") as err:
        Tap(SmallCNN(1, 10, 8), "features.99", "technique.student_hidden")
    assert "features.0" in str(err.value) and "\n" not in str(err.value)


def test_bad_path_fails_before_training(tmp_path):
    import compressor

    cfg = make_cfg(tmp_path, ["technique=kd", "technique.loss=cosine", "model.hidden=nope"])
    with pytest.raises(ConfigError, match="nope"):
        compressor.run(cfg)
    assert not (tmp_path / "outputs" / "cache").exists()


def test_cache_builds_once_under_concurrency_and_rebuilds_corrupt(tmp_path):
    calls = []

    def build(folder):
        calls.append(1)
        (folder / cache.MODEL).write_bytes(b"weights")
        return {"n": len(calls)}

    threads = [
        threading.Thread(target=cache.fetch_or_build, args=(tmp_path, {"model": {"name": "x"}}, build))
        for _ in range(4)
    ]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1
    entry = tmp_path / cache.key({"model": {"name": "x"}})
    (entry / cache.MODEL).write_bytes(b"corrupt")
    _, record, built = cache.fetch_or_build(tmp_path, {"model": {"name": "x"}}, build)
    assert built and record == {"n": 2}
    assert json.loads((entry / "meta.json").read_text())["record"] == {"n": 2}


def test_given_teacher_checkpoint_is_used_instead_of_training(tmp_path):
    first = run_job(tmp_path, ["technique=baseline"], "teacher", fresh=True)
    ckpt = next((tmp_path / "outputs" / "cache").rglob("best.ckpt"))
    r = run_job(tmp_path / "other", ["technique=kd", "technique.epochs=1", f"teacher.checkpoint={ckpt}"], fresh=True)
    assert r["baseline"]["test/acc"] == first["test/acc"]
    assert not (tmp_path / "other" / "outputs" / "cache").exists()
    # measured on the artifact format (weights only), not on the .ckpt with its optimizer state
    assert r["baseline"]["compress/size_mb"] == pytest.approx(first["compress/size_mb"], abs=0.01)
    assert ckpt.stat().st_size / 2**20 > 2 * r["baseline"]["compress/size_mb"]


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    import compressor

    with pytest.raises(ConfigError, match="model.checkpoint: /nowhere.pt: no such file"):
        compressor.run(make_cfg(tmp_path, ["technique=prune", "model.checkpoint=/nowhere.pt"]))


def test_the_teacher_runs_once_per_training_image_not_every_epoch(tmp_path, monkeypatch):
    """teacher_once: its logits are computed before the fit and ride with each batch; the student
    learns the same as against the live teacher (up to float summation order)."""
    from compressor.models import cnn

    calls = []
    forward = cnn.FeatureNet.forward

    def counted(self, x):
        if type(self).__name__ == "SimpleCNN":
            calls.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(cnn.FeatureNet, "forward", counted)
    args = ["technique=kd", "technique.loss=kl", "technique.epochs=3"]
    run_job(tmp_path, [], "teacher")  # trains and caches the teacher: both runs below reuse it
    calls.clear()
    once = run_job(tmp_path, args, "once")
    seen_once, calls[:] = sum(calls), []
    live = run_job(tmp_path, [*args, "technique.teacher_once=false"], "live")
    seen_live = sum(calls)
    assert once["stages"][0]["teacher_once"] is True and live["stages"][0]["teacher_once"] is False
    train = once["run"]["images"]["train"]
    # live: every training image in each of the 3 epochs; once: each image one time (plus evaluation in both)
    assert seen_live - seen_once == 2 * train
    assert abs(once["test/acc"] - live["test/acc"]) <= 0.02
    cosine = run_job(tmp_path, ["technique=kd", "technique.loss=cosine", "technique.epochs=1"], "cosine")
    assert cosine["stages"][0]["teacher_once"] is False  # a feature term needs the teacher's taps live
