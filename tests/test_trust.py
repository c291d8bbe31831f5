"""No file compressor loads can run code: crafted pickles and artifacts through every load path,
the safe artifact format for every kind of model, and artifacts of release 1."""

import copy
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from compressor.errors import ConfigError
from compressor.models.cnn import SimpleCNN
from compressor.quant import fx
from compressor.quant.ops import Cast, torchao_dynamic
from compressor.storage import artifact, cache, checkpoint
from tests import forked, legacy_v1
from tests.conftest import FAST, ROOT, make_cfg, run_cli, run_job

ARCH = {"_target_": "compressor.models.cnn.SimpleCNN", "in_channels": 1, "num_classes": 10, "image_size": 8}


class WritesAFile:
    """Unpickling this calls os.system: a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": WritesAFile(marker)}, path)
    return path


def evil_artifact(path: Path, marker: Path, nested=False) -> Path:
    """A well-formed model.safetensors whose architecture names a shell-capable callable."""
    shell = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    arch = {**ARCH, "norm": shell} if nested else shell
    artifact.save(SimpleCNN(1, 10, 8), path, ARCH, [])
    manifest, tensors = artifact.read(path)
    manifest["arch"] = arch
    from safetensors.torch import save_file

    save_file(tensors, path, metadata={"format": artifact.FORMAT, "manifest": json.dumps(manifest)})
    return path


def evil_v1(path: Path, marker: Path) -> Path:
    """A release-1 model.pt (plain dict, loads with weights_only=True) naming os.system."""
    torch.save(
        {
            "format": legacy_v1.FORMAT,
            "kind": "float",
            "history": [],
            "state": {},
            "structure": {},
            "arch": {"_target_": "os.system", "_args_": [f"touch {marker}"]},
        },
        path,
    )
    return path


EVIL = {
    "pickle": evil_pickle,
    "artifact": evil_artifact,
    "nested_artifact": lambda p, m: evil_artifact(p, m, True),
    "v1_artifact": evil_v1,
}


def one_line(exc) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# -- every load path ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", EVIL)
@pytest.mark.parametrize(
    "overrides,key", [(["technique=prune"], "model.checkpoint"), (["technique=kd"], "teacher.checkpoint")]
)
def test_crafted_checkpoints_run_nothing(tmp_path, kind, overrides, key):
    import compressor

    marker = tmp_path / "pwned"
    bad = EVIL[kind](tmp_path / f"given.{'pt' if 'pickle' in kind or 'v1' in kind else 'safetensors'}", marker)
    with pytest.raises(ConfigError) as err:
        compressor.run(make_cfg(tmp_path, [*overrides, f"{key}={bad}"]))
    assert key in one_line(err.value) and str(bad) in str(err.value)
    assert not marker.exists()
    assert not list(tmp_path.rglob("results.json")) and not (tmp_path / "outputs" / "cache").exists()


def test_crafted_checkpoint_is_one_line_on_the_command_line(tmp_path):
    marker = tmp_path / "pwned"
    bad = evil_pickle(tmp_path / "teacher.pt", marker)
    proc = run_cli([*FAST, "technique=kd", f"teacher.checkpoint={bad}"], tmp_path)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.strip().splitlines() == [x for x in proc.stderr.strip().splitlines() if x.startswith("error:")]
    (line,) = proc.stderr.strip().splitlines()
    assert "teacher.checkpoint" in line and "posix.system" in line and "trust.checkpoint=true" in line


def test_trusted_pickle_loads_only_with_the_opt_in(tmp_path):
    model = SimpleCNN(1, 10, 8)
    path = tmp_path / "whole.pt"
    torch.save(model, path)  # a pickled module: needs arbitrary unpickling
    with pytest.raises(ConfigError, match="trust.checkpoint=true"):
        checkpoint.load(path, "model.checkpoint", ARCH)
    again = checkpoint.load(path, "model.checkpoint", ARCH, trust=True)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(again(x), model.eval()(x))


def test_a_crafted_cache_entry_runs_nothing(tmp_path):
    run_job(tmp_path, [], "first")
    (entry,) = [p for p in (tmp_path / "outputs" / "cache").iterdir() if p.is_dir()]
    marker = tmp_path / "pwned"
    evil_artifact(entry / cache.MODEL, marker)
    meta = json.loads((entry / "meta.json").read_text())
    meta["sha256"] = cache.sha256(entry / cache.MODEL)  # a consistent entry: the checksum cannot catch it
    (entry / "meta.json").write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in entry.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as err:
        run_job(tmp_path, ["technique=prune"], "second")
    assert "not a model factory" in one_line(err.value) and str(entry) in str(err.value)
    assert not marker.exists() and not (tmp_path / "outputs" / "second" / "results.json").exists()
    assert {p: p.read_bytes() for p in entry.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "kind,name", [("pickle", "model.pt"), ("artifact", "model.safetensors"), ("v1_artifact", "model.pt")]
)
def test_predict_runs_nothing(tmp_path, kind, name):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "dataset:\n  in_channels: 1\n  image_size: 8\n  mean: [0.3]\n  std: [0.4]\n  _target_: os.system\n"
    )  # never instantiated
    images = tmp_path / "images"
    images.mkdir()
    marker = tmp_path / "pwned"
    EVIL[kind](run / name, marker)
    proc = forked.run([sys.executable, "-m", "compressor.predict", str(run), str(images)], ROOT, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error:") and name in line
    if kind != "pickle":  # the way to allow a prefix is predict's own flag, not the job's key
        assert "--allow-target" in line and "trust.targets" not in line, line


def test_report_reads_json_only(tmp_path):
    good = run_job(tmp_path, [], "good")
    marker = tmp_path / "pwned"
    evil_pickle(tmp_path / "outputs" / "evil" / "results.json", marker)
    (tmp_path / "outputs" / "odd").mkdir()
    (tmp_path / "outputs" / "odd" / "results.json").write_text('{"run": {"technique": "x"}, "test/acc": "high"}')
    proc = forked.run([sys.executable, "-m", "compressor.report", str(tmp_path / "outputs")], ROOT, timeout=300)
    assert proc.returncode == 0 and not marker.exists() and "Traceback" not in proc.stderr
    assert sum("skipping" in line for line in proc.stderr.splitlines()) == 2, proc.stderr
    assert f"{good['test/acc']:.4f}" in proc.stdout


# -- the format ---------------------------------------------------------------------------------------
def pruned(amount=0.9):
    import torch.nn.utils.prune as tprune

    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 8).eval()
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=amount)
    for m, _ in params:
        tprune.remove(m, "weight")
    return model


def static_int8(model):
    x = torch.randn(32, 1, 8, 8)
    prepared = fx.prepare_static(copy.deepcopy(model), x[:1])
    prepared(x)
    return fx.mark(fx.convert(prepared), "static", [1, 1, 8, 8])


KINDS = {
    "float": lambda m: m,
    "ao_fx": static_int8,
    "torchao": lambda m: torchao_dynamic(copy.deepcopy(m)),
    "cast": lambda m: Cast(copy.deepcopy(m), torch.float16),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_without_pickle(tmp_path, kind, monkeypatch):
    float_model = pruned()
    model = KINDS[kind](float_model)
    path = artifact.save(model, tmp_path / "model.safetensors", ARCH, [{"stage": "x"}], float_model)
    manifest, _ = artifact.read(path)
    assert manifest["kind"] == kind and artifact.is_safetensors(path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # readable as any file we write

    def no_pickle(*a, **k):
        raise AssertionError("an artifact load used pickle")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    again = checkpoint.load(path, "model.checkpoint")
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(again(x), model(x))


def test_pruned_int8_compounds_on_disk(tmp_path):
    """An int8 artifact of a pruned model stores its zeros sparsely too."""
    dense, sparse = SimpleCNN(1, 10, 8).eval(), pruned(0.9)
    sizes = {
        name: os.path.getsize(artifact.save(static_int8(m), tmp_path / f"{name}.safetensors", ARCH, [], m))
        for name, m in (("dense", dense), ("sparse", sparse))
    }
    assert sizes["dense"] / sizes["sparse"] > 3


def test_wrong_shapes_and_damaged_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    path = artifact.save(SimpleCNN(1, 10, 8), tmp_path / "model.safetensors", ARCH, [])
    manifest, tensors = artifact.read(path)
    manifest["state"]["classifier.3.weight"] = manifest["state"]["classifier.0.weight"]  # wrong shape inside
    reshaped = tmp_path / "reshaped.safetensors"
    save_file(tensors, reshaped, metadata={"format": artifact.FORMAT, "manifest": json.dumps(manifest)})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:5000])
    random = tmp_path / "random.pt"
    random.write_bytes(os.urandom(4096))
    small = tmp_path / "small_state.pt"
    torch.save(SimpleCNN(1, 3, 8).state_dict(), small)  # another architecture's weights
    small_st = tmp_path / "small_state.safetensors"
    save_file(SimpleCNN(1, 3, 8).state_dict(), small_st)
    for bad in (reshaped, truncated, random, small, small_st):
        with pytest.raises(ConfigError) as err:
            checkpoint.load(bad, "model.checkpoint", ARCH)
        assert str(bad) in one_line(err.value)


# -- release-1 artifacts --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float", "ao_fx", "torchao"])
def test_release1_artifacts_load_safely_and_exactly(tmp_path, kind):
    """Tensors and containers only (torchao registers its int8 tensor type as safe to load)."""
    float_model = pruned(0.5)
    model = KINDS[kind](float_model)
    path = legacy_v1.save(model, tmp_path / "model.pt", ARCH, [], float_model)
    again = checkpoint.load(path, "model.checkpoint")
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(again(x), model(x))


@pytest.mark.parametrize("kind", ["cast"])
def test_release1_pickled_artifacts_need_trust(tmp_path, kind):
    """fp16/bf16 artifacts of release 1 pickled the whole module."""
    float_model = pruned(0.5)
    model = KINDS[kind](float_model)
    path = legacy_v1.save(model, tmp_path / "model.pt", ARCH, [], float_model)
    with pytest.raises(ConfigError) as err:
        checkpoint.load(path, "model.checkpoint")
    assert "trust.checkpoint=true" in one_line(err.value)
    again = checkpoint.load(path, "model.checkpoint", trust=True)
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(again(x), model(x))


def test_release1_baseline_given_as_checkpoint_keeps_its_accuracy(tmp_path):
    first = run_job(tmp_path, [], "first")
    model = checkpoint.load(tmp_path / "outputs" / "first" / artifact.FILENAME, "model.checkpoint")
    old = legacy_v1.save(model, tmp_path / "old" / "model.pt", ARCH, [])
    r = run_job(tmp_path, ["technique=quant", f"model.checkpoint={old}", "technique.calibration_batches=2"], "again")
    assert r["baseline"]["test/acc"] == first["test/acc"]


def test_a_damaged_or_inflating_sparse_mask_is_one_line(tmp_path):
    """Masks are zlib streams: a damaged one, or one that inflates past its size, is refused."""
    import zlib

    from safetensors.torch import save_file

    path = artifact.save(pruned(0.9), tmp_path / "model.safetensors", ARCH, [])
    manifest, tensors = artifact.read(path)
    key = next(k for k in tensors if k.endswith("#mask"))
    for name, blob in (("damaged", b"not zlib at all"), ("bomb", zlib.compress(bytes(50_000_000)))):
        bad = dict(tensors, **{key: torch.frombuffer(bytearray(blob), dtype=torch.uint8)})
        save_file(
            bad,
            tmp_path / f"{name}.safetensors",
            metadata={"format": artifact.FORMAT, "manifest": json.dumps(manifest)},
        )
        with pytest.raises(ConfigError, match="sparse mask"):
            checkpoint.load(tmp_path / f"{name}.safetensors", "model.checkpoint")
