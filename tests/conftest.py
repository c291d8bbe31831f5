"""Configs composed in tmp dirs, jobs run in-process on CPU; the CLI as a subprocess where the
command line itself is under test."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.config import compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# small and quick: digits, one epoch, few latency repetitions, no progress bars
FAST = ["dataset=digits", "train.epochs=1", "latency.reps=2", "latency.rounds=1", "trainer.enable_progress_bar=false"]


def no_exports(args) -> list:
    """export=none unless the test names one (the default export=all writes and times ONNX and
    OpenVINO files in every run, seconds each: tests/test_openvino.py and test_quant.py cover it)."""
    args = list(args)
    chosen = any(a.startswith("export=") for a in args)
    return args if chosen else [*args, "export=none"]


def make_cfg(tmp_path: Path, overrides=(), run_name="run"):
    return compose(no_exports([*FAST, *overrides]), tmp_path / "outputs", run_name)


def run_job(tmp_path: Path, overrides=(), run_name="run") -> dict:
    import compressor

    return compressor.run(make_cfg(tmp_path, overrides, run_name))


def run_cli(args, cwd, timeout=600, env=None):
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *no_exports(args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def cli(tmp_path):
    def call(*args, timeout=600, env=None):
        return run_cli(list(args), tmp_path, timeout, env)
    return call


@pytest.fixture(scope="session")
def shared_outputs(tmp_path_factory):
    """One outputs/ folder whose cache the tests share: the digits baseline is trained once."""
    return tmp_path_factory.mktemp("shared")
