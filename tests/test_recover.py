"""Recovery and structural pruning: recover=kd distils from the frozen pre-compression model,
each Torch-Pruning importance criterion really removes channels and reloads, iterative steps and
the sparsity-regularised pre-training follow their schedule."""

import lightning as L
import pytest
import torch
from torch import nn

from compressor.config import compose
from compressor.data import user
from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN
from compressor.modules import Classifier, Distiller, recover
from compressor.storage import artifact
from compressor.techniques.prune.callback import Pruning
from tests.conftest import make_cfg, run_job


def stage(tmp_path, *overrides):
    return compose(["dataset=digits", "technique=prune", *overrides], tmp_path / "o").technique


def test_recover_kd_distils_from_the_frozen_model_before_the_stage(tmp_path):
    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pair = torch.randn(2, 1, 8, 8)
    plain = recover.module(stage(tmp_path), model, 10, pair, {"lr": 1e-3})
    assert type(plain) is Classifier
    module = recover.module(
        stage(tmp_path, "technique.recover=kd", "technique.method=channel"), model, 10, pair, {"lr": 1e-3}
    )
    assert isinstance(module, Distiller) and module.model is model and module.teacher is not model
    assert module.weights == {"ce": 0.5, "kl": 0.5}
    assert all(not p.requires_grad for p in module.teacher.parameters()) and not module.teacher.training
    Pruning(amount=0.5, method="channel", example_shape=[1, 1, 8, 8]).apply(module.model, 0.5)
    assert module.model.features[0].out_channels < 32  # the student lost channels ...
    for k, v in module.teacher.state_dict().items():  # ... the teacher is the model as it was
        assert torch.equal(v, before[k]), k
    module.train()
    assert not module.teacher.training


def test_recover_kd_runs_end_to_end_and_is_recorded(tmp_path):
    """The frozen model's logits come once per training image, riding with each batch; taylor
    importance reads its gradient batches from the same loader."""
    r = run_job(
        tmp_path,
        [
            "technique=prune",
            "technique.method=channel",
            "technique.importance=taylor",
            "technique.recover=kd",
            "technique.epochs=1",
        ],
    )
    assert r["stages"][0]["recover"] == "kd" and r["test/acc"] > 0.2  # 10 classes: chance is 0.1
    assert r["stages"][0]["teacher_once"]


def test_recover_kd_is_refused_where_nothing_fine_tunes(tmp_path):
    from compressor import validate

    cfg = make_cfg(tmp_path, ["technique=quant", "technique.recover=kd"])
    with pytest.raises(ConfigError, match="technique.recover=kd with technique.mode=static"):
        validate.values(cfg)


def fitted(tmp_path, callback, epochs, recorder=None):
    cfg = make_cfg(tmp_path)
    dm = user.build(cfg.dataset)
    L.seed_everything(0)
    module = Classifier(SimpleCNN(1, 10, 8), 10, lr=1e-3)
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, *([recorder] if recorder else [])],
    )
    trainer.fit(module, datamodule=dm)
    return module, trainer


@pytest.mark.parametrize("importance", ["l1", "group_norm", "taylor"])
def test_each_importance_removes_channels_and_reloads(tmp_path, importance):
    r = run_job(
        tmp_path,
        [
            "technique=prune",
            "technique.method=channel",
            f"technique.importance={importance}",
            "technique.epochs=1",
            "technique.amount=0.5",
        ],
    )
    assert r["stages"][0]["importance"] == importance
    assert r["compress/macs"] < 0.6 * r["baseline"]["compress/macs"]
    path = tmp_path / "outputs" / "run" / artifact.FILENAME
    model = artifact.load(path)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels < c for m, c in zip(convs, (32, 64, 128)))
    from compressor.measure import accuracy, predict

    dm = user.build(make_cfg(tmp_path).dataset)
    dm.setup()
    assert accuracy(*predict(model, dm.test_dataloader())) == pytest.approx(r["test/acc"], abs=1e-6)


def test_criteria_choose_different_channels(tmp_path):
    kept = {}
    for importance in ("l1", "group_norm", "taylor"):
        callback = Pruning(amount=0.5, method="channel", importance=importance, example_shape=[1, 1, 8, 8])
        module, _ = fitted(tmp_path, callback, 0)
        kept[importance] = module.model.features[0].weight.detach().clone()
    assert not torch.equal(kept["l1"], kept["taylor"]) and not torch.equal(kept["l1"], kept["group_norm"])


class Channels(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append(pl_module.model.features[0].out_channels)
        params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
        assert params == {id(p) for p in pl_module.parameters() if p.requires_grad}  # the optimizer was rebuilt


def test_iterative_steps_remove_channels_between_fine_tune_epochs(tmp_path):
    callback = Pruning(amount=0.5, method="channel", steps=2, scope="layer", example_shape=[1, 1, 8, 8])
    assert [callback.channel_target(e, 4) for e in range(4)] == [0.25, 0.25, 0.5, 0.5]
    recorder = Channels()
    fitted(tmp_path, callback, 2, recorder)
    assert recorder.seen == [24, 16]


def test_regularised_pretraining_prunes_only_after_its_epochs(tmp_path, monkeypatch):
    import torch_pruning as tp

    calls = []
    real = tp.pruner.GroupNormPruner.regularize
    monkeypatch.setattr(
        tp.pruner.GroupNormPruner,
        "regularize",
        lambda self, model, *a, **k: (calls.append(model.features[0].out_channels), real(self, model)),
    )
    with pytest.raises(ConfigError, match="needs technique.epochs >= 3"):
        fitted(tmp_path, Pruning(amount=0.5, method="channel", regularize_epochs=2, example_shape=[1, 1, 8, 8]), 2)
    callback = Pruning(amount=0.5, method="channel", regularize_epochs=1, scope="layer", example_shape=[1, 1, 8, 8])
    recorder = Channels()
    fitted(tmp_path, callback, 2, recorder)
    assert recorder.seen == [32, 16]  # whole during the regularised epoch, pruned after it
    assert calls == [32, 32, 32]  # the regulariser ran after each backward of epoch 0 only (3 batches)


def test_structural_options_are_refused_for_unstructured_pruning():
    for kwargs in ({"importance": "taylor"}, {"steps": 2}, {"regularize_epochs": 1}):
        with pytest.raises(ConfigError, match="applies to technique.method=channel"):
            Pruning(method="l1_unstructured", **kwargs)
    with pytest.raises(ConfigError, match="technique.importance='hessian'"):
        Pruning(method="channel", importance="hessian")


def test_calibration_reads_the_inputs_of_batches_that_carry_logits():
    """QAT under recover=kd calibrates from the fit's training loader, whose batches carry the
    frozen model's logits as a third element."""
    from compressor.quant.ops import calibration_inputs

    x = torch.randn(2, 1, 8, 8)
    loader = [(x, torch.tensor([0, 1]), torch.randn(2, 10))] * 3
    assert [b is x for b in calibration_inputs(loader, 2)] == [True, True]
