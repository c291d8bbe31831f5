"""DDP on CPU with gloo and 2 ranks, from a cold cache (issue 54): one run trains its baseline (or
teacher) and then its stage under DDP, for every technique kind, as a sweep and as a single run; a
rank whose peer never comes ends the run within ddp.timeout_s, with one line.

The single-process runs they are compared with use the DDP run's global batch (2 ranks x 64 = 128),
so both take the same number of optimizer steps on the same recipe; the ranks see other batches in
another order, so the figures agree within a tolerance, not bit for bit. Digits, 1 epoch each."""

import json
import re
import socket
import time

import pytest

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
COLD = [
    "dataset=digits",
    "train.epochs=1",
    "++technique.epochs=1",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
    "paths.cache_dir=${hydra:runtime.output_dir}/cache",
]  # each job its own, empty
SINGLE = ["dataset.batch_size=128"]  # the DDP runs' global batch
KINDS = ("prune", "kd", "cluster", "nm", "pipeline")
TOLERANCE = 0.1  # test accuracy after one epoch on 1,258 images, single process against 2 ranks


def found(folder) -> dict:
    return {json.loads(p.read_text())["run"]["label"]: json.loads(p.read_text()) for p in folder.rglob("results.json")}


def same_weights_on_both_ranks(run) -> dict:
    """{fit: digest} from a run folder's logs (rank 0's run.log, and the other rank's own log under a
    sweep), checking that both ranks ended every fit with the same weights."""
    log = "".join(p.read_text() for p in sorted(run.glob("*.log")))
    ends: dict = {}
    for fit, rank, digest in re.findall(r"- (\S+): rank (\d) of 2 ends with weights (\w+)", log):
        ends.setdefault(fit, {})[rank] = digest
    for fit, ranks in ends.items():
        assert set(ranks) == {"0", "1"} and len(set(ranks.values())) == 1, (fit, ranks)
    return ends


def compare(one: dict, two: dict) -> None:
    for label, single in one.items():
        ddp = two[label]
        assert ddp["baseline"]["trained_now"] and "cache_entry" in ddp["baseline"], label  # trained in this run
        assert abs(ddp["test/acc"] - single["test/acc"]) < TOLERANCE, (label, ddp["test/acc"], single["test/acc"])
        assert abs(ddp["compress/size_mb"] - single["compress/size_mb"]) <= 0.02 * single["compress/size_mb"], label
        assert ddp["test/acc"] > 0.5, label  # trained, not at chance (10 classes)


def test_every_technique_trains_its_baseline_and_its_stage_in_one_ddp_run_of_a_sweep(cli, tmp_path):
    """prune, kd, cluster, nm and the pipeline, each job from its own empty cache: the sweep that hung
    after `stage prune` (each rank waited on the other) ends with one result per job."""
    sweep = f"technique={','.join(KINDS)}"
    single = cli("-m", sweep, *COLD, *SINGLE, "hydra.sweep.dir=outputs/single", timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    start = time.monotonic()
    ddp = cli("-m", sweep, *COLD, *DDP, "hydra.sweep.dir=outputs/ddp", timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert time.monotonic() - start < 240, "five digits jobs of one epoch each"
    one, two = found(tmp_path / "outputs" / "single"), found(tmp_path / "outputs" / "ddp")
    assert len(one) == len(two) == len(KINDS) and set(one) == set(two)
    compare(one, two)
    for job in (tmp_path / "outputs" / "ddp").iterdir():
        if job.is_dir():
            ends = same_weights_on_both_ranks(job)
            assert len(ends) >= 2, (job.name, ends)  # the baseline or teacher's fit and the stage's


def test_qat_trains_its_baseline_and_fine_tunes_under_ddp_in_one_run(cli, tmp_path):
    """The issue's command itself (not a sweep), for quantization-aware training."""
    args = ["technique=quant", "technique.mode=qat", *COLD]
    single = cli(*args, *SINGLE, "hydra.run.dir=outputs/single", timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = cli(*args, *DDP, "hydra.run.dir=outputs/ddp", timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = found(tmp_path / "outputs" / "single"), found(tmp_path / "outputs" / "ddp")
    compare(one, two)
    ends = same_weights_on_both_ranks(tmp_path / "outputs" / "ddp")
    assert set(ends) == {"train_simple_cnn", "quant"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_whose_peer_never_comes_ends_the_run_within_the_bound_with_one_line(cli, tmp_path):
    """Rank 0 of 2 started alone, as a launcher that lost its second task would: it waits for rank 1
    at the fit's start no longer than ddp.timeout_s, says so in one line with the command that
    continues, caches nothing, and the same command then runs to the end."""
    alone = {
        "LOCAL_RANK": "0",
        "NODE_RANK": "0",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    args = [
        "technique=prune",
        *COLD,
        *DDP,
        "paths.cache_dir=outputs/cache",
        "ddp.timeout_s=10",
        "hydra.run.dir=outputs/run",
    ]
    start = time.monotonic()
    stuck = cli(*args, env=alone, timeout=120)
    assert stuck.returncode == 1, stuck.stderr[-2000:]
    assert time.monotonic() - start < 10 + 60
    line = stuck.stderr.strip().splitlines()[-1]
    assert line.startswith("stopped: rank 0 of 2 waited 10 s for the other ranks to start the fit"), line
    assert "in train_simple_cnn" in line and "ddp.timeout_s" in line and "`python " in line, line
    assert "technique=prune" in line.split("`")[1], line  # the command that continues the run
    cache = tmp_path / "outputs" / "cache"
    assert not [p for p in cache.iterdir() if p.is_dir() and not p.name.endswith(".partial")], "nothing cached"
    assert not (tmp_path / "outputs" / "run" / "results.json").exists()

    # both ranks this time (Lightning launches the second), with a wider bound: on a loaded machine two
    # fresh ranks took longer than 10 s to meet (make test beside two training jobs), and the bound is
    # what the run above tests
    again = cli(*args, "ddp.timeout_s=120", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "outputs" / "run" / "results.json").is_file()


@pytest.mark.parametrize("wait_s", [0.5])
def test_a_lock_held_elsewhere_bounds_a_ddp_rank_s_wait(tmp_path, wait_s):
    """cache.locked with a bound gives up after it (a DDP rank must not wait on a lock longer than
    its peers wait for it); without one it would wait for as long as the holder keeps it."""
    from compressor.storage import cache

    path = tmp_path / "x.lock"
    with cache.locked(path):
        start = time.monotonic()
        with pytest.raises(cache.Waited, match="x.lock"):
            with cache.locked(path, wait_s):
                pass
        assert wait_s <= time.monotonic() - start < wait_s + 5
    with cache.locked(path, wait_s):  # free again: taken at once
        pass


@pytest.mark.parametrize(
    "trainer, expected",
    [
        ({"devices": 2}, 2),
        ({"devices": "2"}, 2),
        ({"devices": "0,1"}, 2),
        ({"devices": [0, 1], "num_nodes": 2}, 4),
        ({"devices": 2, "strategy": "single_device"}, 1),
        ({"devices": 1}, 1),
        ({"devices": "auto", "accelerator": "cpu"}, 1),
    ],
)
def test_every_rank_reads_ddp_from_the_trainer_config_alone(trainer, expected, monkeypatch):
    """What decides a stage's folder: the config every rank holds, whatever the environment says
    (the ranks once disagreed on WORLD_SIZE and deadlocked)."""
    from omegaconf import OmegaConf

    from compressor.training import ddp

    for world in ("1", "2", None):
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        assert ddp.processes(OmegaConf.create(trainer)) == expected
