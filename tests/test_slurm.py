"""Sweeps and searches on a real SLURM cluster (issue 44): the single-node cluster tests/cluster/up
starts from Debian's packages (munge, MariaDB, slurmdbd, slurmctld, slurmd), driven through the
command line as a user types it. Where the cluster cannot start (not root, no apt-get) every test
here is skipped with the script's own line as the reason. Run them with `make test-cluster`."""
import json
import subprocess
import time

import pytest

from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.cluster
SEARCH = ["search=default", "budget.max_drop=1", "dataset=digits", "train.epochs=2", "latency.reps=2",
          "latency.rounds=1", "trainer.enable_progress_bar=false", "search.runtime=onnxruntime", "search.promote=1",
          "search.max_trials=2", "search.parallel=2"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    proc = subprocess.run([str(ROOT / "tests" / "cluster" / "up")], capture_output=True, text=True, timeout=600)
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip() or proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def slurm_jobs(folder, settle_s: float = 60) -> dict:
    """{job id: state} of the jobs whose submitit logs are under `folder`, from SLURM's accounting,
    once they have ended there: submitit reads a job's result as soon as the job writes it, while
    SLURM may still show it RUNNING for a few seconds of cleanup."""
    ids = sorted({p.name.split("_")[0] for p in folder.rglob(".submitit/*") if p.name[0].isdigit()})
    deadline = time.time() + settle_s
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
                             capture_output=True, text=True, check=True).stdout
        states = dict(line.split("|") for line in out.split())
        if not any(s in ("PENDING", "RUNNING", "COMPLETING") for s in states.values()) or time.time() > deadline:
            return states
        time.sleep(1)


def test_a_two_job_sweep_runs_as_slurm_jobs_and_is_summarised(tmp_path, cli):
    proc = cli("-m", "hydra/launcher=slurm_cpu", "technique=baseline,prune", *FAST, "++technique.epochs=1",
               "hydra.sweep.dir=outputs/sweep", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweep"
    assert len(list(sweep.rglob("results.json"))) == 2 and (sweep / "summary.md").is_file()
    jobs = slurm_jobs(sweep)  # the accounting daemon saw them: they ran on SLURM, not in this process
    assert jobs and all(state == "COMPLETED" for state in jobs.values()), jobs
    assert "Bypassing sacct error" not in proc.stdout + proc.stderr


def test_a_search_sends_its_trials_as_a_job_array_with_the_same_trials_as_joblib(tmp_path, cli):
    local = cli(*SEARCH, "hydra.run.dir=outputs/local", timeout=1200)
    assert local.returncode == 0, local.stderr[-3000:]
    array = cli(*SEARCH, "hydra/launcher=slurm_cpu", "hydra.run.dir=outputs/slurm", timeout=1200)
    assert array.returncode == 0, array.stderr[-3000:]
    assert slurm_jobs(tmp_path / "outputs" / "slurm"), "no trial ran on SLURM"

    def trials(name):  # what each trial trained to, on validation: the same seeds give the same models
        lines = (tmp_path / "outputs" / name / "trials.jsonl").read_text().splitlines()
        return sorted((t["rung"], t["label"], tuple(sorted(round(c["val/acc"], 6) for c in t["candidates"])))
                      for t in map(json.loads, lines))
    assert trials("slurm") == trials("local")
    for name in ("local", "slurm"):
        chosen = json.loads((tmp_path / "outputs" / name / "search.json").read_text())["chosen"]
        assert chosen and (tmp_path / "outputs" / name / "ship" / chosen["file"]).is_file()
