"""Long jobs survive faults, through the command line as a user meets them: a killed fit resumes
where it stopped and ends with the same weights, a diverged fit is an error that caches nothing,
a baseline is never reused for other data, and bad data or a full disk are one line."""

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests import forked
from tests.conftest import FAST, ROOT, no_exports

# epochs of 45 steps: the kill, sent as soon as the first checkpoint exists, lands well before the last
RESUMABLE = [*FAST, "train.epochs=4", "dataset.batch_size=32", "logger=none"]


def entries(root: Path) -> list[Path]:
    """Whole cache entries (not locks, not partial builds)."""
    return [p for p in (root / "outputs" / "cache").glob("*") if p.is_dir() and "." not in p.name]


def cached_weights(root: Path) -> dict:
    (entry,) = entries(root)
    return load_file(entry / "model.safetensors")


def start(args, cwd: Path):
    """run.py as its own process (tests/forked.py), Ctrl-C raising KeyboardInterrupt in it."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return forked.popen([sys.executable, str(ROOT / "run.py"), *no_exports(args)], cwd, env)


def wait_for_checkpoint(proc, root: Path, timeout=300) -> None:
    """Until the first epoch's last.ckpt of the baseline's build exists (the fit is then in epoch 2)."""
    deadline = time.time() + timeout
    while not glob.glob(str(root / "outputs" / "cache" / "*.partial" / "checkpoints" / "last.ckpt")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = forked.run([sys.executable, str(ROOT / "run.py"), *no_exports(RESUMABLE)], root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cached_weights(root)


def test_kill_9_in_epoch_2_resumes_and_ends_with_the_uninterrupted_weights(tmp_path, cli, uninterrupted):
    proc = start(RESUMABLE, tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not entries(tmp_path)  # nothing stored: the build was cut short
    again = cli(*RESUMABLE)
    assert again.returncode == 0, again.stderr[-2000:]
    log = again.stdout + again.stderr
    assert "resuming train_simple_cnn" in log and "of 4 epochs done" in log, log[-3000:]
    done = int(log.split("resuming train_simple_cnn")[1].split(":")[1].split(" of 4")[0])
    assert 1 <= done < 4
    weights = cached_weights(tmp_path)
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[k], uninterrupted[k]) for k in weights)
    assert not list((tmp_path / "outputs" / "cache").glob("*.partial"))  # adopted, then stored


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_checkpoint(tmp_path):
    proc = start(RESUMABLE, tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted (SIGINT)")
    assert "run the same command again" in err and "Traceback" not in err
    assert glob.glob(str(tmp_path / "outputs" / "cache" / "*.partial" / "checkpoints" / "last.ckpt"))


def test_orphaned_temp_folders_of_dead_processes_are_removed(tmp_path, cli):
    from compressor.storage import cache

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / "outputs" / "cache" / f"somekey.tmp-{dead.pid}"
    (orphan / "checkpoints").mkdir(parents=True)
    mine = tmp_path / "outputs" / "cache" / f"somekey.tmp-{os.getpid()}"
    mine.mkdir()
    cache.remove_orphans(tmp_path / "outputs" / "cache", "somekey")
    assert not orphan.exists() and mine.exists()


def test_a_diverged_fit_is_one_line_and_caches_nothing(tmp_path, cli):
    proc = cli(*FAST, "train.optimizer=sgd", "train.lr=1e6")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "diverged in epoch 1" in lines[0] and "train.lr" in lines[0], proc.stderr[-2000:]
    assert not entries(tmp_path) and not list((tmp_path / "outputs" / "cache").glob("*.partial"))
    assert not list((tmp_path / "outputs").rglob("results.json"))


def write_folder(root: Path, classes: dict) -> Path:
    """root/<class>/<i>.png: 8x8 grey images, bright for 'light', dark for 'dark', by class."""
    g = torch.Generator().manual_seed(0)
    for name, level in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(24):
            pixels = (level + 40 * torch.rand(8, 8, generator=g)).clamp(0, 255).byte().numpy()
            Image.fromarray(pixels, "L").save(root / name / f"{i:03d}.png")
    return root


FOLDER = [
    "dataset=image_folder",
    "dataset.num_classes=2",
    "dataset.in_channels=1",
    "dataset.image_size=8",
    "dataset.mean=[0.5]",
    "dataset.std=[0.5]",
    "dataset.batch_size=8",
    *FAST[1:],
]


def test_two_folders_with_swapped_classes_do_not_share_a_cache_entry(tmp_path, cli):
    a = write_folder(tmp_path / "a", {"dark": 20, "light": 200})
    b = write_folder(tmp_path / "b", {"dark": 200, "light": 20})  # the same images, class folders swapped
    first = cli(*FOLDER, f"dataset.data_dir={a}")
    assert first.returncode == 0, first.stderr[-2000:]
    second = cli(*FOLDER, f"dataset.data_dir={b}")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "reused cached" not in second.stdout + second.stderr
    assert len(entries(tmp_path)) == 2
    os.utime(a / "dark" / "000.png", ns=(1, 1))  # a file of the first folder changed: not the same data
    third = cli(*FOLDER, f"dataset.data_dir={a}")
    assert third.returncode == 0 and "reused cached" not in third.stdout + third.stderr
    assert len(entries(tmp_path)) == 3


def test_a_corrupt_image_fails_before_training_or_is_skipped_with_the_flag(tmp_path, cli):
    folder = write_folder(tmp_path / "imgs", {"dark": 20, "light": 200})
    (folder / "dark" / "x.png").write_text("not an image")
    proc = cli(*FOLDER, f"dataset.data_dir={folder}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "x.png" in lines[0] and "dataset.skip_bad_images" in lines[0], proc.stderr[-2000:]
    assert "training simple_cnn" not in proc.stdout + proc.stderr
    skipped = cli(*FOLDER, f"dataset.data_dir={folder}", "dataset.skip_bad_images=true")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "skipped 1 unreadable image" in skipped.stdout + skipped.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: room for Hydra's files and logs, not for a 2.4 MB model."""
    mount = tmp_path / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)])


def test_a_full_run_folder_is_one_line_and_leaves_no_partial_file(tmp_path, cli, small_disk):
    proc = cli(*FAST, f"hydra.run.dir={small_disk}/run")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on device" in lines[0] and str(small_disk) in lines[0], proc.stderr[
        -2000:
    ]
    left = {p.name for p in (small_disk / "run").rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert left <= {"run.log"}, left  # no model, no results.json, no temp file
    assert entries(tmp_path)  # the baseline trained before the full disk was met stays cached, whole


@pytest.mark.slow  # 36 s (make test-all)
def test_sensitivity_on_a_small_vit_finishes(tmp_path, cli):
    timm_vit = [
        "model=timm",
        "model.net.model_name=vit_tiny_patch16_224",
        "+model.net.img_size=8",
        "+model.net.patch_size=2",
        "+model.net.depth=1",
        "+model.net.embed_dim=32",
        "+model.net.num_heads=2",
    ]
    proc = cli(*FAST, *timm_vit, "technique=sensitivity", "technique.grid=[0.5]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "outputs" / "runs").rglob("sensitivity.csv"))


def stage_weights(root: Path) -> dict:
    from compressor.storage import artifact

    (path,) = (root / "outputs" / "runs").glob("*/results.json")
    return artifact.load(path.parent / "model.safetensors").state_dict()


# a stage's fine-tune resumes like a baseline's fit; weight sharing's too: its cluster assignments
# are made again at setup, its shared values come back from the checkpoint. Pruning's recovery stops
# by a patience of 1 (compressor/training/recovery.py): its counts and best weights resume too
@pytest.mark.parametrize(
    "technique", ["prune", pytest.param("cluster", marks=pytest.mark.slow)]
)  # cluster: 54 s, make test-all
def test_a_stage_killed_mid_fine_tune_resumes_to_the_same_weights(tmp_path, cli, technique):
    stage = [*FAST, f"technique={technique}", "technique.epochs=4", "dataset.batch_size=32", "logger=none"]
    stage += ["technique.patience=1"] if technique == "prune" else []
    clean = tmp_path / "clean"
    clean.mkdir()
    assert run_in(clean, stage).returncode == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = start(stage, killed)
    kill_after_stage_checkpoints(proc, killed, 1)
    again = run_in(killed, stage)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {technique} from" in again.stdout + again.stderr
    a, b = stage_weights(clean), stage_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((killed / "outputs" / "index").glob("*.partial"))  # the finished job leaves none


def kill_after_stage_checkpoints(proc, root: Path, count: int, timeout=300) -> None:
    """kill -9 as soon as `count` stage folders (compressor/prefixes.py) hold a last.ckpt."""
    deadline = time.time() + timeout
    while len(glob.glob(str(root / "outputs" / "index" / "stages" / "*" / "last.ckpt"))) < count:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def run_in(cwd: Path, args):
    return forked.run(
        [sys.executable, str(ROOT / "run.py"), *no_exports(args)],
        cwd,
        {**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=600,
    )


def test_chance_is_two_standard_errors_above_guessing():
    from compressor.results import at_chance

    assert at_chance(0.106, 360, 10) and at_chance(0.13, 360, 10)  # 1/10 + 2 * 0.0158 = 0.1316
    assert not at_chance(0.14, 360, 10) and not at_chance(0.9, 360, 10) and not at_chance(None, 360, 10)


def test_a_baseline_at_chance_is_flagged_and_not_cached(tmp_path):
    from tests.conftest import run_job

    r = run_job(tmp_path, ["train.optimizer=sgd", "train.lr=1e-9", "train.momentum=0", "logger=none"], fresh=True)
    assert r["baseline"]["at_chance"] and r["run"]["at_chance"]
    assert not entries(tmp_path)  # the untrained model is in the run folder only
    assert (Path(r["run"]["run_dir"]) / "model_at_chance.safetensors").is_file()
