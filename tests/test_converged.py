"""train=converged: the baseline trains until `patience` epochs bring no better validation accuracy,
the best epoch is kept, and the default recipe keeps every cache key it had."""

import json
from types import SimpleNamespace

import pytest

from compressor import baseline, validate
from compressor.config import compose
from compressor.training.fit import Plateau
from tests.conftest import CONF, make_cfg, run_job


def test_early_stopping_ends_the_fit_and_keeps_the_best_epoch(tmp_path):
    out = run_job(tmp_path, ["train=converged", "train.epochs=12", "train.patience=2"], fresh=True)
    (meta,) = (tmp_path / "outputs" / "cache").rglob("meta.json")
    record = json.loads(meta.read_text())["record"]
    curve = record["val/acc_per_epoch"]
    assert record["patience"] == 2 and record["epochs_trained"] == len(curve) < 12  # stopped early
    best = curve.index(max(curve))
    assert len(curve) - 1 - best == 2  # exactly `patience` epochs without a better val/acc
    assert abs(out["val/acc"] - max(curve)) < 1e-6  # the model measured is the best epoch's


def test_a_resumed_fit_whose_patience_ran_out_stops_at_once():
    stop = Plateau(patience=3)
    stop.wait_count = 3  # as restored from the last checkpoint of a fit that had stopped
    trainer = SimpleNamespace(should_stop=False)
    stop.on_train_start(trainer, None)
    assert trainer.should_stop
    stop.wait_count, trainer.should_stop = 2, False
    stop.on_train_start(trainer, None)
    assert not trainer.should_stop


def test_the_default_recipe_keeps_its_cache_keys(tmp_path):
    """`patience` is new: unset, it is left out of the job's key, so jobs cached before it are found."""
    cfg = make_cfg(tmp_path)
    assert cfg.train.patience is None
    spec = baseline.plain(cfg)
    del spec["train"]["patience"]
    data = {"data": "fingerprint"}
    without = baseline.fingerprint(baseline.OmegaConf.create(spec), data)
    assert baseline.fingerprint(cfg, data) == without
    converged = compose(["dataset=digits", "train=converged"], tmp_path / "outputs")
    assert (converged.train.epochs, converged.train.patience) == (16, None)
    assert baseline.fingerprint(converged, data) != baseline.fingerprint(
        compose(["dataset=digits"], tmp_path / "outputs"), data
    )


@pytest.mark.parametrize("technique", sorted(p.stem for p in (CONF / "technique").glob("*.yaml")))
def test_validation_leaves_every_default_job_key_as_it_was(tmp_path, technique):
    """An integer given for a number key is written back as a float (below); no default is such an
    integer, so every job keyed before keeps its key. A prune stage's null scope is written back as the
    scope it means: global for unstructured methods, the default it replaced, so their keys stay too."""
    from compressor.techniques.base import sections

    overrides = [f"technique={technique}", "search=default", "budget.max_drop=1.0"]
    cfg, was = make_cfg(tmp_path, overrides), make_cfg(tmp_path, overrides)
    for _, node in sections(was.technique):  # the config as composed while scope's default was global
        if node.get("kind") == "prune" and node.scope is None and node.method != "channel":
            node.scope = "global"
    data = {"data": "fingerprint"}
    before = baseline.fingerprint(was, data)
    validate.values(cfg)
    assert baseline.fingerprint(cfg, data) == before


def test_an_integer_and_a_float_for_the_same_number_are_one_job(tmp_path):
    data = {"data": "fingerprint"}
    keys = set()
    for given in ("1", "1.0"):
        cfg = make_cfg(tmp_path, ["technique=prune", f"budget.max_drop={given}", f"technique.reg={given}"])
        validate.values(cfg)
        assert isinstance(cfg.budget.max_drop, float) and isinstance(cfg.technique.reg, float)
        keys.add(baseline.fingerprint(cfg, data))
    assert len(keys) == 1
