"""Sweeps and searches on a real SLURM cluster (issue 44): the single-node cluster tests/cluster/up
starts from Debian's packages (munge, MariaDB, slurmdbd, slurmctld, slurmd), driven through the
command line as a user types it. Where the cluster cannot start (not root, no apt-get) every test
here is skipped with the script's own line as the reason. Run them with `make test-cluster`."""

import json
import re
import subprocess
import time

import pytest
import torch

from tests.conftest import FAST, ROOT, cli_call

pytestmark = pytest.mark.cluster
# digits: 90 validation images to certify on (compressor/certify.py), enough for a 10-point budget whatever the trials give
SEARCH = [
    "search=default",
    "budget.max_drop=10",
    "dataset=digits",
    "train.epochs=2",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
    "search.runtime=onnxruntime",
    "search.promote=1",
    "search.max_trials=2",
    "search.parallel=2",
]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    proc = subprocess.run([str(ROOT / "tests" / "cluster" / "up")], capture_output=True, text=True, timeout=600)
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip() or proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(autouse=True)
def no_job_left(tmp_path):
    """A test that fails or times out cancels its own SLURM jobs: left running, they would hold the
    node's CPUs and the next test's jobs would wait behind them."""
    yield
    ids = slurm_ids(tmp_path)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def slurm_ids(folder) -> list[str]:
    """The SLURM job ids (an array's, for a sweep) that submitit's folders under `folder` are named after;
    submitit also writes temporary files there (.submission_file_*)."""
    return sorted({p.name.split("_")[0] for p in folder.rglob(".submitit/*") if p.name[0].isdigit()})


def slurm_jobs(folder, settle_s: float = 60) -> dict:
    """{job id: state} of the jobs whose submitit logs are under `folder`, from SLURM's accounting,
    once they have ended there: submitit reads a job's result as soon as the job writes it, while
    SLURM may still show it RUNNING for a few seconds of cleanup."""
    ids = slurm_ids(folder)
    deadline = time.time() + settle_s
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = dict(line.split("|") for line in out.split())
        if not any(s in ("PENDING", "RUNNING", "COMPLETING") for s in states.values()) or time.time() > deadline:
            return states
        time.sleep(1)


def test_a_two_job_sweep_runs_as_slurm_jobs_and_is_summarised(tmp_path, cli):
    proc = cli(
        "-m",
        "hydra/launcher=slurm_cpu",
        "technique=baseline,prune",
        *FAST,
        "++technique.epochs=1",
        "hydra.sweep.dir=outputs/sweep",
        timeout=900,
    )
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
        return sorted(
            (t["rung"], t["label"], tuple(sorted(round(c["val/acc"], 6) for c in t["candidates"])))
            for t in map(json.loads, lines)
        )

    assert trials("slurm") == trials("local")
    for name in ("local", "slurm"):
        chosen = json.loads((tmp_path / "outputs" / name / "search.json").read_text())["chosen"]
        assert chosen and (tmp_path / "outputs" / name / "ship" / chosen["file"]).is_file()


# SLURM's time limit, for real: a 1-minute limit with the signal 5 s before it, which SLURM sends
# between 25 and 55 s after the start (its timer ticks every 30 s). tests/cluster/up lets a requeued
# job start again about 10 s later (SLURM's default: 2 minutes).
LIMITED = [
    "hydra/launcher=slurm_cpu",
    "hydra.launcher.timeout_min=1",
    "hydra.launcher.signal_delay_s=5",
    "technique=baseline",
    "dataset=digits",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
]
LONG = [
    "technique=baseline",
    "dataset=digits",
    "train.epochs=60",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
]


def test_a_job_at_its_time_limit_is_requeued_resumes_and_ends_with_the_uninterrupted_weights(tmp_path):
    """The signal SLURM sends at a job's time limit (--signal=USR2@signal_delay_s, what submitit
    requeues on), sent here once the job has checkpointed an epoch: the same handler runs as at the
    limit (submitit counts it as a timeout: timeout_min is under its 10-minute margin), at a moment
    the test chooses rather than SLURM's 30-second timer. The real limit is the next test's."""
    from safetensors.torch import load_file

    local = tmp_path / "local"
    local.mkdir()
    uninterrupted_run = Job(LONG, local)  # the same job, uninterrupted, in a process of its own here, meanwhile
    sweep = Job(
        [
            "-m",
            "hydra/launcher=slurm_cpu",
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.max_num_timeout=3",
            *LONG,
            "hydra.sweep.dir=outputs/sweep",
        ],
        tmp_path,
    )
    wait_for(lambda: next((tmp_path / "outputs" / "cache").glob("*.partial/checkpoints/last.ckpt"), None))
    (job,) = slurm_ids(tmp_path / "outputs" / "sweep")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    assert sweep.wait() == 0, sweep.err()[-3000:]
    log = (tmp_path / "outputs" / "sweep" / "0_baseline" / "run.log").read_text()
    stopped = [int(n) for n in re.findall(r"requeued by SLURM after (\d+) of 60 epochs", log)]
    resumed = [int(n) for n in re.findall(r"resuming train_simple_cnn from .*?: (\d+) of 60 epochs done", log)]
    assert stopped and resumed == stopped and all(0 < n < 60 for n in resumed), log[-2000:]
    assert uninterrupted_run.wait() == 0, uninterrupted_run.err()[-3000:]
    (requeued,), (uninterrupted,) = (
        [load_file(p) for p in (root / "outputs" / "cache").glob("*/model.safetensors")] for root in (tmp_path, local)
    )
    assert requeued.keys() == uninterrupted.keys()
    assert all(torch.equal(requeued[k], uninterrupted[k]) for k in requeued)


def test_a_job_out_of_requeues_is_one_line_and_the_rest_of_the_sweep_is_summarised(tmp_path, cli):
    proc = cli(
        "-m",
        *LIMITED,
        "train.epochs=1,400",
        "hydra.launcher.max_num_timeout=0",
        "hydra.sweep.dir=outputs/sweep",
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweep"
    assert len(list(sweep.rglob("results.json"))) == 1 and (sweep / "summary.md").is_file()
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("job ")]
    assert "train.epochs=400" in line and "SLURM's time limit, no requeue left" in line, line
    assert re.search(r"after \d+ of 400 epochs", line) and line.endswith("hydra.sweep.dir=outputs/sweep export=none"), (
        line
    )


def test_a_cancelled_job_is_one_line_the_rest_summarised_and_a_rerun_continues_it(tmp_path):
    args = [
        "-m",
        "hydra/launcher=slurm_cpu",
        "technique=baseline",
        "dataset=digits",
        "train.epochs=1,100",
        "latency.reps=2",
        "latency.rounds=1",
        "trainer.enable_progress_bar=false",
        "hydra.sweep.dir=outputs/sweep",
    ]
    sweep = Job(args, tmp_path)
    wait_for(
        lambda: (
            (tmp_path / "outputs" / "sweep" / "0_baseline" / "results.json").is_file()  # the 1-epoch job is
            and next((tmp_path / "outputs" / "cache").glob("*.partial/checkpoints/last.ckpt"), None)
        )
    )  # done, the other mid-fit
    (array,) = slurm_ids(tmp_path / "outputs" / "sweep")
    subprocess.run(["scancel", f"{array}_1"], check=True)
    assert sweep.wait() == 1
    err = sweep.err()
    assert "Traceback" not in err, err[-3000:]
    (line,) = [x for x in err.splitlines() if x.startswith("job ")]
    assert "train.epochs=100" in line and "interrupted (SIGTERM)" in line and f"SLURM job {array}_1" in line, line
    assert len(list((tmp_path / "outputs" / "sweep").rglob("results.json"))) == 1
    again = Job(args, tmp_path)
    assert again.wait() == 0, again.err()[-3000:]
    log = (tmp_path / "outputs" / "sweep" / "1_baseline" / "run.log").read_text()
    assert re.search(r"resuming train_simple_cnn from .*: [1-9]\d* of 100 epochs done", log), log[-2000:]
    assert len(list((tmp_path / "outputs" / "sweep").rglob("results.json"))) == 2


def wait_for(condition, seconds: float = 300):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.5)


class Job:
    """run.py with `args` in `cwd`, started now; its stderr in a file (a pipe left unread would block it)."""

    def __init__(self, args, cwd):
        self.log = cwd / f"stderr-{time.monotonic_ns()}.txt"
        # one torch thread, as in a 1-CPU SLURM job (compressor.job.slurm_threads): the same weights here and there
        command, env = cli_call(args, {"OMP_NUM_THREADS": "1"})
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)

    def wait(self) -> int:
        return self.proc.wait(timeout=600)

    def err(self) -> str:
        return self.log.read_text()


def test_ddp_across_two_slurm_tasks_trains_the_baseline_and_a_stage_and_writes_one_result(tmp_path, cli):
    """DDP with gloo across 2 SLURM tasks on one node, from an empty cache: each task is a rank through
    Lightning's SLURM environment (no process launched by Lightning), rank 0 alone trains into the
    cache, both ranks then fine-tune the pruning stage and end every fit with the same weights, rank 0
    writes results.json, and the job ends COMPLETED. (Both tasks once took the cache's lock as rank 0
    and waited for each other in the fit's first barrier; then the ranks disagreed on the stage's
    folder and hung after `stage prune`, issue 54.)"""
    proc = cli(
        "-m",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.timeout_min=5",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "technique=prune",
        "++technique.epochs=1",
        "dataset=digits",
        "train.epochs=1",
        "latency.reps=2",
        "latency.rounds=1",
        "trainer.enable_progress_bar=false",
        "hydra.sweep.dir=outputs/sweep",
        timeout=600,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweep"
    assert len(list(sweep.rglob("results.json"))) == 1 and (sweep / "summary.md").is_file()
    log = (sweep / "0_prune" / "run.log").read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-2000:]
    for fit in ("train_simple_cnn", "prune"):
        ends = dict(re.findall(rf"{fit}: rank (\d) of 2 ends with weights (\w+)", log))
        assert set(ends) == {"0", "1"} and ends["0"] == ends["1"], (fit, log[-2000:])  # both ranks, the same weights
    result = json.loads(next(sweep.rglob("results.json")).read_text())
    assert result["compress/sparsity"] > 0.3
    assert [p.name for p in (tmp_path / "outputs" / "cache").iterdir() if p.is_dir()] == [
        result["baseline"]["cache_entry"].split("/")[-1]
    ]
    assert set(slurm_jobs(sweep).values()) == {"COMPLETED"}


def test_a_job_sbatch_refuses_is_one_line_naming_the_launcher_key(tmp_path, cli):
    """More memory than the node has: sbatch refuses the job; the user reads sbatch's reason and the
    key to change in one line, not submitit's traceback, and nothing ran."""
    proc = cli(
        "-m",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.mem_gb=100000",
        "technique=baseline",
        *FAST,
        "hydra.sweep.dir=outputs/sweep",
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: sbatch refused the job: ") and "hydra.launcher.mem_gb" in line, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "outputs").rglob("results.json"))
