"""The command line as a user runs it, as a subprocess in a tmp dir; the reuse of a finished job in-process."""

import json

from tests.conftest import FAST, run_job


def runs(tmp_path):
    return sorted((tmp_path / "outputs" / "runs").glob("*"))


def test_run_leaves_a_complete_run_directory(cli, tmp_path):
    proc = cli(*FAST, fresh=True)  # a new interpreter, as a user starts it (the other tests' commands are forked)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp_path)
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "model.safetensors", "results.json", "tb"} <= names
    r = json.loads((run / "results.json").read_text())
    for key in (
        "test/acc",
        "val/acc",
        "val/acc_best",
        "val/acc_per_epoch",
        "compress/size_mb",
        "compress/params",
        "compress/nonzero_params",
        "compress/macs",
        "latency/b1_ms",
        "latency/b64_ms",
        "latency/threads",
        "train/time_s",
    ):
        assert key in r, key
    assert r["latency/threads"] == 1 and len(r["val/acc_per_epoch"]) == 1
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    assert "test/acc" in proc.stdout
    # the checkpoint of the baseline training sits in its cache entry
    assert list((tmp_path / "outputs" / "cache").rglob("best.ckpt"))


def test_unknown_group_option_lists_the_options(cli):
    proc = cli("dataset=imagenet")
    assert proc.returncode != 0
    assert "Could not find 'dataset/imagenet'" in proc.stderr and "mnist5k" in proc.stderr


def test_bad_input_does_not_touch_an_earlier_run(cli, tmp_path):
    assert cli(*FAST).returncode == 0
    (run,) = runs(tmp_path)
    before = (run / "results.json").read_bytes()
    assert cli(*FAST, "train.lr=0", "rerun=true").returncode != 0
    assert (run / "results.json").read_bytes() == before
    assert len(runs(tmp_path)) == 1 or not list(runs(tmp_path)[-1].glob("results.json"))


def test_sweep_reports_and_resume_skips_done_jobs(cli, tmp_path):
    args = ["-m", "technique=baseline,prune", *FAST]
    first = cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*")
    for name in ("summary.md", "summary.csv", "val_acc_bars.png", "acc_vs_size.png", "val_acc_per_epoch.png"):
        assert (sweep / name).is_file(), name
    table = (sweep / "summary.md").read_text()
    assert "baseline" in table and "prune l1_unstructured global oneshot 0.5" in table
    assert "training simple_cnn" in (first.stdout + first.stderr)
    second = cli(*args)
    assert second.returncode == 0
    log = second.stdout + second.stderr
    assert log.count("skipping:") == 2 and "training simple_cnn" not in log
    sweeps = sorted((tmp_path / "outputs" / "multirun").glob("*"))
    assert len(sweeps) == 2 and (sweeps[1] / "summary.md").is_file()


def test_a_reused_job_writes_its_results_into_a_new_run_folder(tmp_path):
    """rerun=false in-process (make bench --reuse): the second job's folder does not exist yet."""
    first = run_job(tmp_path, ["technique=baseline", "logger=none"], "first")
    again = run_job(tmp_path, ["technique=baseline", "logger=none"], "again")
    assert again["run"]["reused_from"].endswith("first/results.json")
    assert again["test/acc"] == first["test/acc"]


def test_flags_after_overrides_work_in_a_folder_with_its_own_conf(tmp_path):
    """The installed command adds ./conf to Hydra's search path as an override of its own; it joins
    the user's overrides, so `... --cfg job` or `... -m` after them is not refused."""
    import subprocess
    import sys

    from compressor.cli import with_override

    x = "hydra.searchpath=[x]"
    assert with_override(["c", "a=1", "--cfg", "job"], x) == ["c", "a=1", x, "--cfg", "job"]
    assert with_override(["c", "-m", "a=1,2", "b=3"], x) == ["c", "-m", "a=1,2", "b=3", x]
    assert with_override(["c", "--cfg", "job"], x) == ["c", x, "--cfg", "job"]
    assert with_override(["c"], x) == ["c", x]
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("name: mine\nnet:\n  _target_: torch.nn.Identity\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from compressor.cli import main; main()", "model=mine", "seed=3", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed: 3" in proc.stdout and "name: mine" in proc.stdout


def test_the_python_api_runs_a_job_as_the_command_line_does(tmp_path):
    import pytest

    import compressor
    from compressor.errors import ConfigError
    from tests.conftest import no_exports

    r = compressor.run(
        no_exports([*FAST, "technique=prune", "technique.amount=0.7", "technique.epochs=1"]),
        outputs=tmp_path / "outputs",
        name="prune70",
    )
    assert r["run"]["technique"] == "prune" and r["compress/sparsity"] > 0.5
    assert (tmp_path / "outputs" / "prune70" / "config.yaml").is_file()
    with pytest.raises(ConfigError, match=r"^technique.amount=1.5"):
        compressor.run([*FAST, "technique=prune", "technique.amount=1.5"], outputs=tmp_path / "outputs", name="bad")
    assert not (tmp_path / "outputs" / "bad").exists()
