"""Bad input through the command line, as a user meets it: for each case a non-zero exit, one line
that names the key or file, no traceback, no results.json, an unchanged cache and earlier run.

Value errors are refused before torch is imported (about a second each); trainer and file
contents need the full imports, so fewer of those run here."""

import hashlib
import os

import pytest
import torch

from compressor import settings as rules_
from compressor import validate
from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN
from compressor.techniques import base
from tests.conftest import CONF, FAST, run_cli


def snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a trained, cached baseline and one finished run, plus bad files to give."""
    root = tmp_path_factory.mktemp("bad_input")
    proc = run_cli([*FAST, "hydra.run.dir=outputs/runs/earlier"], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = root / "files"
    files.mkdir()
    (files / "empty.pt").write_bytes(b"")
    (files / "random.pt").write_bytes(os.urandom(2048))
    real = next((root / "outputs" / "cache").rglob("best.ckpt")).read_bytes()
    (files / "truncated.ckpt").write_bytes(real[: len(real) // 2])
    torch.save(SimpleCNN(1, 3, 8).state_dict(), files / "other_arch.pt")
    codes = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in SimpleCNN(1, 10, 8).state_dict().items()}
    torch.save(codes, files / "int8.pt")  # the right names and shapes, int8 codes where floats belong
    (files / "a_file").write_text("x")
    return root


PT = "files/"
CASES = [  # (overrides, what the one line must name)
    ("seed=abc", "seed"),
    ("seed=-1", "seed"),
    ("rerun=maybe", "rerun"),
    ("size_budget_mb=0", "size_budget_mb"),
    ("train.epochs=0", "train.epochs"),
    ("train.epochs=2.5", "train.epochs"),
    ("train.lr=abc", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-1", "train.lr"),
    ("train.optimizer=adagrad", "train.optimizer"),
    ("train.scheduler=linear", "train.scheduler"),
    ("train.patience=0", "train.patience"),
    ("train.weight_decay=-1", "train.weight_decay"),
    ("latency.threads=0", "latency.threads"),
    ("latency.reps=x", "latency.reps"),
    ("ddp.timeout_s=0", "ddp.timeout_s"),
    ("dataset.batch_size=0", "dataset.batch_size"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction"),
    ("dataset.train_size=0", "dataset.train_size"),
    ("technique=cluster technique.bits=9", "technique.bits"),
    ("technique=nm technique.n=4", "technique.n=4"),
    ("technique=nm technique.include=[features.0]", "no chosen layer's inputs split into groups of 4"),
    ("dataset.num_workers=-1", "dataset.num_workers"),
    ("dataset.std=[0]", "dataset.std"),
    ("dataset=image_folder", "dataset.data_dir"),
    ("technique=prune technique.amount=1.2", "technique.amount"),
    ("technique=prune technique.method=magnitude", "technique.method"),
    ("technique=prune technique.schedule=linear", "technique.schedule"),
    ("technique=prune technique.epochs=-1", "technique.epochs"),
    ("technique=quant technique.mode=int4", "technique.mode"),
    ("technique=quant technique.calibration_batches=0", "technique.calibration_batches"),
    ("technique=quant technique.api=tflite", "technique.api"),
    ("technique=quant technique.api=pt2e technique.mode=dynamic", "technique.api=pt2e"),
    ("technique=kd technique.temperature=-1", "technique.temperature"),
    ("technique=kd technique.loss=bogus", "technique.loss"),
    ("technique=kd technique.weights={ce:-1}", "technique.weights"),
    ("technique=pipeline technique.prune.amount=2", "technique.prune.amount"),
    ("technique=pipeline technique.order=[kd,distill]", "technique.order"),
    ("budget.max_drop=-1", "budget.max_drop"),
    ("budget.grid=[0,1.5]", "budget.grid"),
    ("budget.probe_epochs=x", "budget.probe_epochs"),
    ("technique=prune technique.amounts={features.0:1.5}", "technique.amounts"),
    ("technique=quant technique.keep_float=classifier.0", "technique.keep_float"),
    ("technique=sensitivity technique.methods=[magnitude]", "technique.methods"),
    ("export.onnx=maybe", "export.onnx"),
    ("export.test=maybe", "export.test"),
    ("trust.checkpoint=yes", "trust.checkpoint"),
    ("trainer.max_epochs=2", "trainer.max_epochs"),
    (f"paths.cache_dir={PT}a_file/cache", "paths.cache_dir"),
    ("technique=prune technique.amout=0.3", "technique.amout"),
    ("dataset=imagenet", "dataset/imagenet"),
    ("technique=prune technique.amount=[1", "technique.amount"),
    ("model.checkpoint=files/missing.pt", "missing.pt"),
    ("model.checkpoint=files/empty.pt", "empty.pt"),
    # these need torch and Lightning: the trainer dry run and the files' contents
    ("trainer.accelerator=tpux", "trainer"),
    ("+model.net.depth=3", "model.net"),
    ("technique=prune technique.include=[encoder.*]", "technique.include"),
    ("technique=prune technique.amounts={encoder:0.5}", "technique.amounts"),
    ("technique=quant technique.keep_float=[encoder]", "technique.keep_float"),
    ("technique=prune model.checkpoint=files/random.pt", "random.pt"),
    ("technique=prune model.checkpoint=files/truncated.ckpt", "truncated.ckpt"),
    ("technique=prune model.checkpoint=files/other_arch.pt", "other_arch.pt"),
    ("technique=prune model.checkpoint=files/int8.pt", "not floating-point"),
    ("dataset=fashion_mnist dataset.download=false +dataset.system_dir=files/no_debian", "dataset-fashion-mnist"),
    # after the data load, before training: one real batch through each model
    ("model=timm model.net.model_name=convnext_atto", "cannot take the data's input of shape [2, 1, 8, 8]"),
]


@pytest.mark.parametrize("overrides,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(workdir, overrides, names):
    before = snapshot(workdir / "outputs")
    proc = run_cli([*FAST, *overrides.split()], workdir, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    after = snapshot(workdir / "outputs")
    assert {k: v for k, v in after.items() if k in before} == before  # cache and earlier run untouched
    assert not [k for k in after if k not in before and k.endswith("results.json")]
    assert not [k for k in after if k not in before and k.startswith("cache")]


def rule_tables(tmp_path):
    """(node the rules read, rules, prefix) for the top level, the dataset, and each stage kind."""
    from tests.conftest import make_cfg

    cfg = make_cfg(tmp_path)
    yield cfg, validate.TOP, ""
    yield cfg.dataset, validate.DATASET, "dataset."
    for kind in sorted(p.stem for p in (CONF / "technique").glob("*.yaml")):  # every stage the project ships
        stage = make_cfg(tmp_path, [f"technique={kind}"]).technique
        if "_target_" not in stage:  # the baseline, a pipeline: no stage of their own
            continue
        yield stage, rules_.rules_of(base.stage_class("technique.", stage).settings), "technique."


def test_every_rule_accepts_its_default_and_refuses_a_bad_value_by_name(tmp_path):
    """Not a count of cases: each rule of validate's tables, run alone, passes the shipped config
    and refuses a value of the wrong kind (a mapping of words; a list where it takes a mapping) with
    one line naming its key, the way `apply` reports it on the command line."""
    from omegaconf import OmegaConf

    for node, rules, prefix in rule_tables(tmp_path):
        for key, rule in rules.items():
            rules_.apply(node, {key: rule}, prefix)  # the default passes
            bad = OmegaConf.create({})
            OmegaConf.update(bad, key, ["x"] if rule[0]({"x": 1.0}) else {"not": "a value"}, force_add=True)
            with pytest.raises(ConfigError, match=rf"^{prefix}{key}=.*: must be ") as err:
                rules_.apply(bad, {key: rule}, prefix)
            assert "\n" not in str(err.value)
