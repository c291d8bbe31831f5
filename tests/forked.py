"""The command line as a fork of a process that has imported torch, Lightning, Hydra and compressor once.

A command-line test starts `python run.py ...`, and each such Python spent ~6 s of CPU importing
torch and Lightning before it read its first argument: most of `make test`'s time. Here each command
is still a process of its own (its own argv, folder, environment, file descriptors, exit status and
signals; nothing it does reaches the test or the next command), forked from multiprocessing's fork
server with those modules already imported. What differs from a fresh interpreter: the imports ran
once, in the server, so a fault at import time or an environment variable read only then (none of
compressor's) would not be seen. `make test-all` and COMPRESSOR_TEST_FORK=0 run every command as
a fresh interpreter (`subprocess`), and tests/test_cli.py keeps one fresh run in `make test`."""

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ENABLED = os.environ.get("COMPRESSOR_TEST_FORK", "1") != "0"
PRELOAD = ["tests.preload"]  # imported once by the fork server
_context = None


def context():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def forkable(command: list[str]) -> bool:
    """`python script ...`, `python -c code ...` or `python -m module ...` with this interpreter."""
    return (
        ENABLED
        and len(command) >= 2
        and command[0] == sys.executable
        and (command[1] in ("-c", "-m") and len(command) >= 3 or not command[1].startswith("-"))
    )


def _child(command: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    """In the forked process: the command's descriptors, folder, environment and argv, then its
    code as `__main__`; its exit status is the process's."""
    import runpy
    import traceback
    import warnings

    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    sys.stdin = open(os.devnull)
    # Ctrl-C raises KeyboardInterrupt, as in an interpreter started from a terminal (a background
    # `make test &` starts everything with SIGINT ignored, the fork server included)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from tests import preload

    warnings.filters[:] = preload.FRESH_FILTERS  # as a new interpreter starts, then its -W options
    warnings._filters_mutated()
    if env.get("PYTHONWARNINGS"):
        warnings._processoptions(env["PYTHONWARNINGS"].split(","))  # what the interpreter does at start
    if env.get("OMP_NUM_THREADS", "").isdigit():  # torch reads it when its thread pool starts
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    code = 0
    try:
        if command[1] == "-c":
            sys.argv = ["-c", *command[3:]]
            sys.path.insert(0, "")
            exec(compile(command[2], "<string>", "exec"), {"__name__": "__main__"})
        elif command[1] == "-m":
            sys.argv = [command[2], *command[3:]]
            sys.path.insert(0, cwd)
            sys.modules.pop(command[2], None)  # the server imported it; -m runs it afresh, as __main__
            runpy.run_module(command[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = command[1:]
            sys.path.insert(0, str(Path(command[1]).resolve().parent))
            runpy.run_path(command[1], run_name="__main__")
    except SystemExit as exc:  # sys.exit(None | int | message), as the interpreter ends on it
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # uncaught, an interpreter ends killed by SIGINT
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


class Forked:
    """The part of subprocess.Popen the tests use: pid, poll, wait, send_signal, communicate (text)."""

    def __init__(self, command: list[str], cwd, env: dict):
        self.args = command
        folder = tempfile.mkdtemp(prefix="forked-")
        self._out, self._err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        self._process = context().Process(target=_child, args=(command, str(cwd), dict(env), self._out, self._err))
        self._process.start()
        self.pid = self._process.pid
        self.returncode = None

    def poll(self):
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout=None):
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout=None):
        self.wait(timeout)
        out, err = Path(self._out).read_text(errors="replace"), Path(self._err).read_text(errors="replace")
        for path in (self._out, self._err):
            Path(path).unlink(missing_ok=True)
        os.rmdir(os.path.dirname(self._out))
        return out, err


def popen(command: list[str], cwd, env: dict | None = None):
    """A Forked process where the command allows one, else subprocess.Popen with pipes (text); in
    both, SIGINT raises KeyboardInterrupt as a terminal's Ctrl-C does (a background `make test &`
    passes SIGINT on ignored, and the Ctrl-C test would then see a clean exit)."""
    env = dict(os.environ if env is None else env)
    if forkable(command):
        return Forked(command, cwd, env)
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run(
    command: list[str], cwd, env: dict | None = None, timeout: float | None = None, fresh: bool = False
) -> subprocess.CompletedProcess:
    """subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout),
    forked where the command allows it and `fresh` (a new interpreter) is not asked for."""
    if fresh or not forkable(command):
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    proc = Forked(command, cwd, dict(os.environ if env is None else env))
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise subprocess.TimeoutExpired(command, timeout) from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
