"""Scale-out paths on CPU: DDP with gloo, joblib and submitit launchers, the Optuna search."""

import json

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import CONF

FAST = [
    "dataset=digits",
    "train.epochs=2",
    "++technique.epochs=2",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
]


def results(tmp_path):
    return {
        json.loads(p.read_text())["run"]["technique"]: json.loads(p.read_text())
        for p in (tmp_path / "outputs").rglob("results.json")
    }


DDP = [
    "dataset=digits",
    "train.epochs=3",
    "++technique.epochs=6",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
]


def test_ddp_on_cpu_matches_single_process(cli, tmp_path):
    single = cli("-m", "technique=prune,kd", *DDP, "hydra.sweep.dir=outputs/single")
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = cli(
        "-m",
        "technique=prune,kd",
        *DDP,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "rerun=true",
        "hydra.sweep.dir=outputs/ddp",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    ddp_files = list((tmp_path / "outputs" / "ddp").rglob("results.json"))
    assert len(ddp_files) == 2, "one results.json per job, written by rank zero only"
    assert len(list((tmp_path / "outputs").glob("multirun"))) == 0, "a DDP child started a sweep of its own"
    one = {
        json.loads(p.read_text())["run"]["technique"]: json.loads(p.read_text())
        for p in (tmp_path / "outputs" / "single").rglob("results.json")
    }
    two = {json.loads(p.read_text())["run"]["technique"]: json.loads(p.read_text()) for p in ddp_files}
    for technique in ("prune", "kd"):
        # two ranks see half the batches each per step: same recipe, not bit-identical numbers
        assert abs(two[technique]["test/acc"] - one[technique]["test/acc"]) < 0.1, technique
    assert abs(two["prune"]["compress/sparsity"] - one["prune"]["compress/sparsity"]) < 0.01
    assert len([p for p in (tmp_path / "outputs" / "cache").iterdir() if p.is_dir()]) == 1
    assert (tmp_path / "outputs" / "ddp" / "summary.md").is_file()


def test_joblib_launcher_two_jobs(cli, tmp_path):
    proc = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "technique=baseline,quant", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = results(tmp_path)
    assert set(found) == {"baseline", "quant"}
    # both jobs share one cache entry: the lock let one job train and the other reuse
    assert found["baseline"]["baseline"]["cache_entry"] == found["quant"]["baseline"]["cache_entry"]


def test_slurm_preset_composes():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=4",
                "hydra.launcher.tasks_per_node=4",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min) == (
        "gpu",
        4,
        4,
        240,
    )


@pytest.mark.slow  # 18 s: the submitit plugin; make test-all runs it (CI keeps joblib, DDP and the SLURM preset)
def test_one_job_through_submitit_local_executor(cli, tmp_path):
    proc = cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "technique=baseline", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(results(tmp_path)) == {"baseline"}
    assert list((tmp_path / "outputs" / "multirun").rglob(".submitit"))


@pytest.mark.slow  # 24 s: three Optuna trials; make test-all runs it
def test_optuna_search_reports_best_trial(cli, tmp_path):
    proc = cli(
        "-m",
        "hparams_search=kd_prune_optuna",
        "hydra.sweeper.n_trials=3",
        "dataset=digits",
        "train.epochs=1",
        "technique.kd.epochs=1",
        "technique.prune.epochs=1",
        "latency.reps=2",
        "latency.rounds=1",
        "size_budget_mb=1",
        "trainer.enable_progress_bar=false",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (best,) = (tmp_path / "outputs" / "multirun").rglob("optimization_results.yaml")
    data = yaml.safe_load(best.read_text())
    assert "technique.prune.amount" in data["best_params"] and 0 <= data["best_value"] <= 1
    trials = [json.loads(p.read_text()) for p in best.parent.rglob("results.json")]
    # the search selects on validation: its best value is the best trial's val/acc, never a test figure
    assert data["best_value"] == pytest.approx(max(r["val/acc"] for r in trials if r["compress/size_mb"] <= 1))
    assert "Best trial" in (best.parent / "summary.md").read_text()


def test_a_slurm_job_uses_the_cpus_slurm_gave_it(monkeypatch):
    """torch would start a thread per core of the node; a job's CPUs are SLURM_CPUS_PER_TASK."""
    import torch

    from compressor.job import slurm_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    try:
        torch.set_num_threads(2)
        slurm_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting wins
        torch.set_num_threads(2)
        slurm_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
