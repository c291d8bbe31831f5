"""A user's own model, data and folder: the installed command outside the repository, a
LightningDataModule of their own, a timm model, names that never go stale."""

import json
import os
import subprocess
import sys

import pytest

from compressor.errors import ConfigError
from tests.conftest import FAST, build_wheel, make_cfg, run_job
from tests.user_code import write_user_folder

USER_DM = [
    "dataset=datamodule",
    "dataset.datamodule._target_=tests.user_code.DigitsModule",
    "dataset.name=my_digits",
    "dataset.in_channels=1",
    "dataset.image_size=8",
    "dataset.num_classes=10",
]


def test_installed_command_runs_a_users_model_outside_the_repository(tmp_path):
    """Build the wheel, install it (no dependencies: this machine's venv has them), and run the
    `compressor` command in a folder holding only the user's model module and conf/model."""
    prefix = tmp_path / "installed"
    wheel = build_wheel(tmp_path)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # --ignore-installed: without it pip would uninstall this venv's own (editable) compressor
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--ignore-installed", "--prefix", str(prefix), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (site,) = prefix.glob("lib/python*/site-packages")
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}
    user = write_user_folder(tmp_path / "work")
    where = subprocess.run(
        [sys.executable, "-c", "import compressor; print(compressor.__file__)"],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where  # the wheel's package, not this checkout
    proc = subprocess.run(
        [
            str(prefix / "bin" / "compressor"),
            "-m",
            "model=tinynet",
            "technique=prune,quant",
            *FAST,
            "++technique.epochs=1",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (user / "outputs" / "multirun").iterdir()
    found = [json.loads(p.read_text()) for p in sweep.rglob("results.json")]
    assert sorted(r["run"]["technique"] for r in found) == ["prune", "quant"]
    assert all(r["run"]["model"] == "tinynet" and r["baseline"]["model"] == "tinynet" for r in found)
    rows = [line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("| digits")]
    assert len(rows) == 3 and all("| tinynet |" in row for row in rows)
    assert "| tinynet |" in proc.stdout  # the table on the console too


def test_a_users_lightning_datamodule(tmp_path):
    r = run_job(tmp_path, [*USER_DM, "technique=prune", "technique.epochs=1"])
    assert r["run"]["dataset"] == "my_digits" and r["baseline"]["test/acc"] > 0.5
    with pytest.raises(ConfigError, match="dataset.num_classes=3: the datamodule"):
        run_job(tmp_path, [*USER_DM[:-1], "dataset.num_classes=3"], "mismatch")
    with pytest.raises(ConfigError, match="no num_classes attribute"):
        run_job(tmp_path, [*USER_DM, "dataset.datamodule._target_=tests.user_code.NoClasses"], "bare")


def test_a_target_swapped_on_the_command_line_is_named_by_its_class(cli, tmp_path):
    proc = cli(*FAST, "model.net._target_=compressor.models.cnn.SmallCNN")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = (tmp_path / "outputs").rglob("results.json")
    assert json.loads(results.read_text())["run"]["model"] == "SmallCNN"  # not the stale simple_cnn


def test_timm_model(tmp_path):
    pytest.importorskip("timm", reason="timm is not installed: it is the optional extra compressor[timm]")
    r = run_job(
        tmp_path, ["model=timm", "model.net.model_name=resnet10t", "technique=quant", "technique.calibration_batches=2"]
    )
    assert r["run"]["model"] == "resnet10t" and r["compress/size_mb"] < r["baseline"]["compress/size_mb"]


def test_unknown_timm_name_is_one_line(tmp_path):
    pytest.importorskip("timm", reason="timm is not installed: it is the optional extra compressor[timm]")
    from compressor import job

    with pytest.raises(ConfigError, match="model.net.model_name='no_such_net'"):
        job.main(make_cfg(tmp_path, ["model=timm", "model.net.model_name=no_such_net"]))


def test_kd_taps_default_to_the_last_linear_input(tmp_path):
    """A model config that names no taps (like a user's) distils through the input of its last Linear."""
    r = run_job(
        tmp_path, ["technique=kd", "technique.loss=cosine", "technique.epochs=1", "~model.hidden", "~teacher.hidden"]
    )
    assert r["run"]["technique"] == "kd" and r["stages"][0]["weights"]["cosine"] > 0
