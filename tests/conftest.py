"""Configs composed in tmp dirs, jobs run in-process on CPU; the CLI as a subprocess where the
command line itself is under test."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# make test runs the files on pytest-xdist workers, one per core: each worker (and each command it
# starts) computes on one torch thread, or two workers would share each core four ways
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from compressor.config import compose  # noqa: E402
from tests import forked  # noqa: E402

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


SHARED: dict = {}  # the digits baseline trained once for the whole test run (`trained_baseline`)


def trained_baseline() -> Path:
    """FAST's baseline (SimpleCNN on digits, 1 epoch, seed 0), trained once per test run: its cache entry.
    Every run_job starts with a copy of it in its own cache, so a job on that baseline reuses it
    (its lock, checks and reuse path are the cache's own) instead of training it again."""
    if "entry" not in SHARED:
        import atexit
        import tempfile

        import compressor

        root = Path(tempfile.mkdtemp(prefix="compressor-tests-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        r = compressor.run(make_cfg(root, ["technique=baseline"], "baseline"))
        SHARED["entry"] = Path(r["baseline"]["cache_entry"])
    return SHARED["entry"]


def run_job(tmp_path: Path, overrides=(), run_name="run", fresh=False) -> dict:
    """One job in-process. Its cache starts with the shared digits baseline unless `fresh` (a test of
    the cache itself, or of what a first training records)."""
    import compressor

    cfg = make_cfg(tmp_path, overrides, run_name)
    if not fresh:
        entry = trained_baseline()
        mine = Path(cfg.paths.cache_dir) / entry.name
        if not mine.exists():
            shutil.copytree(entry, mine)
    return compressor.run(cfg)


def cli_call(args, env=None) -> tuple[list[str], dict]:
    """run.py's command line and environment as the tests start it."""
    return (
        [sys.executable, str(ROOT / "run.py"), *no_exports(args)],
        {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def run_cli(args, cwd, timeout=600, env=None, fresh=False):
    """run.py as its own process: forked from a server that imported torch and Lightning once
    (tests/forked.py), or with `fresh` (and under COMPRESSOR_TEST_FORK=0) a new interpreter."""
    command, full_env = cli_call(args, env)
    return forked.run(command, cwd, full_env, timeout, fresh)


def build_wheel(folder: Path) -> Path:
    """The wheel of a copy of the checkout under `folder` (building in the checkout would leave
    build/ there); compressor/conf stays the link to conf/ that it is in the checkout."""
    source, dist = folder / "source", folder / "dist"
    for name in ("compressor", "conf"):
        shutil.copytree(
            ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "-q",
            "--disable-pip-version-check",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("compressor-*.whl")
    return wheel


@pytest.fixture
def cli(tmp_path):
    def call(*args, timeout=600, env=None, fresh=False):
        return run_cli(list(args), tmp_path, timeout, env, fresh)

    return call


@pytest.fixture(scope="session")
def shared_outputs(tmp_path_factory):
    """One outputs/ folder whose cache the CUDA tests share: each GPU baseline is trained once."""
    return tmp_path_factory.mktemp("shared_cuda")
