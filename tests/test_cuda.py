"""The CUDA and DDP-on-GPU paths. CI has no GPU, so these skip there; they ran on a lent H200
(experiments/README.md, "On a GPU", says when and with which torch). Each job must really run its
training on the GPU (CUDA memory was allocated) and still save a file that reloads on CPU, without
pickle, to the accuracy it reported."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from compressor.measure import accuracy_of as accuracy
from compressor.storage import artifact, checkpoint
from tests.conftest import make_cfg, run_job

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has none; run on a GPU machine)")

GPU = ["trainer=gpu", "train.epochs=3"]
TECHNIQUES = {
    "baseline": ["technique=baseline"],
    "prune_channel": ["technique=prune", "technique.method=channel", "technique.amount=0.5", "technique.epochs=1"],
    "prune_unstructured": ["technique=prune", "technique.amount=0.8", "technique.epochs=1"],
    "quant_static": ["technique=quant", "technique.mode=static"],
    "quant_qat": ["technique=quant", "technique.mode=qat", "technique.epochs=1"],
    "kd": ["technique=kd", "technique.epochs=2"],
    "cluster": ["technique=cluster", "technique.epochs=1"],
    "nm": ["technique=nm", "technique.epochs=1"],
    "pipeline": ["technique=pipeline", "technique.prune.epochs=1"],
}


def reload(r: dict):
    def no_pickle(*a, **k):
        raise AssertionError("loading the artifact used pickle")

    path = Path(r["run"]["run_dir"]) / artifact.FILENAME
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "load", no_pickle)
        m.setattr(pickle, "loads", no_pickle)
        return checkpoint.load(path, "model.checkpoint").eval()


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_each_technique_trains_on_cuda_and_its_file_reloads_on_cpu(shared_outputs, name):
    torch.cuda.reset_peak_memory_stats()
    r = run_job(shared_outputs, [*GPU, *TECHNIQUES[name]], name)
    assert torch.cuda.max_memory_allocated() > 0 or not r["baseline"].get("trained_now"), "nothing ran on the GPU"
    assert not r["run"].get("at_chance") and r["test/acc"] > 0.5, r["test/acc"]
    model = reload(r)
    assert next(model.parameters(), torch.zeros(1)).device.type == "cpu"
    dm = instantiate(make_cfg(shared_outputs).dataset)
    dm.setup()
    assert accuracy(model, dm.test_dataloader()) == pytest.approx(r["test/acc"], abs=1e-6), "the file is not the model"


def test_fp32_on_cuda_learns_what_the_cpu_learns(tmp_path):
    cpu = run_job(tmp_path / "cpu", ["technique=baseline", "train.epochs=3"])
    gpu = run_job(
        tmp_path / "gpu", ["technique=baseline", "train.epochs=3", "trainer=gpu", "trainer.precision=32-true"]
    )
    # other kernels, other rounding: the same recipe, not the same bits
    assert abs(gpu["test/acc"] - cpu["test/acc"]) < 0.05, (gpu["test/acc"], cpu["test/acc"])


def test_ddp_on_gpus_through_the_cli(cli, tmp_path):
    devices = min(torch.cuda.device_count(), 2)
    proc = cli(
        "-m",
        "technique=prune,kd",
        "dataset=digits",
        "train.epochs=2",
        "latency.reps=2",
        "latency.rounds=1",
        "trainer.enable_progress_bar=false",
        "trainer=ddp",
        "trainer.accelerator=gpu",
        f"trainer.devices={devices}",
        "hydra.sweep.dir=outputs/ddp_gpu",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "ddp_gpu").rglob("results.json")]
    assert sorted(r["run"]["technique"] for r in found) == ["kd", "prune"]
    assert all(r["test/acc"] > 0.5 for r in found), [r["test/acc"] for r in found]
