"""What every runtime module provides (compressor/runtimes/__init__.py lists the names), and the
model object its `load` returns. A runtime module imports its own packages inside its functions, so
the registry and the config's validation read it before torch loads."""

from functools import lru_cache
from pathlib import Path
from typing import Protocol


class Runtime(Protocol):
    FILES: dict  # {"fp32": file name, "int8": file name} in the run folder
    STATIC: bool  # also compiled for a fixed input shape: "<precision> static" candidates
    MODES: tuple  # the quant stage's modes it runs as technique.backend; () where it is not a backend
    WITHIN: str | None  # how its int8 meets an accuracy budget by itself (int8's `within`), or None

    def require(self) -> None: ...  # its packages, or ConfigError naming the pip extra

    def export(self, model, example, path) -> Path: ...  # float torch model -> its fp32 file

    def int8(self, model, example, calibration, fp32, path, mode="static", within=None) -> Path: ...

    def load(self, path, threads: int = 1, static: bool = False) -> "RuntimeModel": ...

    def version(self) -> str: ...  # for the latency table's machine key ("none" when not installed)


class RuntimeModel:
    """A deployed file that behaves like a model: float tensor in, logits tensor out. The runtime's
    session opens on first use (`open`), with `threads` intra-op threads; it is not pickled.
    `static`: whether it is compiled for each input's fixed shape. Its class is defined in its
    runtime's module (that is how compressor.runtimes.of names its runtime)."""

    def __init__(self, path, threads: int = 1, static: bool = False):
        self.path = Path(path)
        self.threads = threads
        self.static = static
        self._session = None

    def session(self):
        if self._session is None:
            self._session = self.open()
        return self._session

    def __call__(self, x):
        import numpy as np
        import torch

        return torch.from_numpy(np.array(self.run(x.detach().cpu().numpy().astype(np.float32))))

    def eval(self):
        return self

    def computes_in(self) -> str | None:
        """What precision the runtime really computes in, where it may differ from the file's (a runtime
        that picks one by itself reports it); None: as the file says."""
        return None

    def __getstate__(self):
        return {"path": self.path, "threads": self.threads, "static": self.static, "_session": None}


def one_line(exc: ImportError, extra: str):
    from compressor.errors import ConfigError

    return ConfigError(
        f"this runtime needs the optional extra that provides {exc.name!r}: "
        f"pip install 'compressor[{extra}]' (make install installs it)"
    )


@lru_cache(maxsize=None)
def installed(module: str) -> str:
    """A package's version, or "none", without importing it (read once per process: every latency
    table key asks for it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "none"
