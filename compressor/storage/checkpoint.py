"""Every model file compressor reads goes through `load`, and no file can run code unless the
user vouches for it (`trust.checkpoint=true`).

Accepted: our artifact (model.safetensors), a plain state dict in safetensors, a Lightning .ckpt,
a plain state dict saved by torch.save, and a version-1 artifact (the model.pt of earlier
releases). Pickle-based files are read with torch.load(weights_only=True): tensors and plain
containers only. A file that needs more (it names a class or a function) is refused in one line,
unless trusted. Every failure is a ConfigError of one line that names the key and the file."""

import importlib
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from compressor.errors import ConfigError
from compressor.storage import artifact
from compressor.validate import CHECKPOINTS, check_file


def torch_load(path: Path, trust: bool = False):
    """torch.load that runs no code from the file, unless `trust`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if named and named.group(1).startswith("torchao.") and "torchao.quantization" not in sys.modules:
            importlib.import_module("torchao.quantization")  # registers torchao's tensor types as safe to load
            return torch_load(path, trust)
        if trust:  # the user vouched for this file (trust.checkpoint=true)
            return torch.load(path, map_location="cpu", weights_only=False)  # trusted: trust.checkpoint=true
        what = f"it names {named.group(1)}" if named else "it is not plain tensors and containers"
        raise ConfigError(
            f"{path}: refused, loading it could run code ({what}); re-save it as a state dict or "
            f"safetensors, or set trust.checkpoint=true only for a file you vouch for"
        ) from None
    except Exception as exc:  # torch.load reports a damaged file in many ways (zip, EOF, safetensors header)
        raise ConfigError(
            f"{path}: not a readable checkpoint, truncated or not a model file ({type(exc).__name__})"
        ) from None


def from_state(state: dict, arch: dict | None, path) -> nn.Module:
    """The config's architecture filled with a state dict (Lightning's `model.` prefix dropped)."""
    if arch is None:
        raise ConfigError(f"{path}: a bare state dict; it needs the architecture of model.net to load into")
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConfigError(f"{path}: holds no state dict (expected a mapping of names to tensors)")
    state = {k.removeprefix("model."): v for k, v in state.items()}
    model = instantiate(arch)
    problems = mismatches(model.state_dict(), state)
    if problems:
        raise ConfigError(f"{path}: weights do not fit {arch['_target_']}: {problems}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: weights do not fit {arch['_target_']} ({type(exc).__name__})") from None
    return model


def mismatches(expected: dict, given: dict, most: int = 3) -> str:
    """Why `given` does not fill a model whose state dict is `expected`, as whole phrases (empty:
    it fits). Floating-point parameters need floating-point tensors: int8 or uint8 codes of the
    right shape would otherwise load as values and train from garbage."""

    def some(names):
        return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} is {list(given[k].shape)}, the model's {list(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    kinds = [
        f"{k} is {given[k].dtype}"
        for k, v in expected.items()
        if k in given and v.is_floating_point() and not given[k].is_floating_point()
    ]
    parts = [
        f"missing {some(missing)}" if missing else "",
        f"unexpected {some(unexpected)}" if unexpected else "",
        f"shapes differ: {some(shapes)}" if shapes else "",
        f"not floating-point where the model's weights are: {some(kinds)}" if kinds else "",
    ]
    return "; ".join(p for p in parts if p)


def legacy(payload: dict, path, targets=(), hint=artifact.TARGETS_HINT) -> nn.Module:
    """A version-1 artifact (model.pt): float and torch.ao int8 ones load from tensors alone;
    torchao and fp16/bf16 ones held pickled objects and only load with trust.checkpoint=true."""
    artifact.check_targets(payload.get("arch"), targets, f"{path}: the architecture", hint)
    k = payload.get("kind")
    if k == "pickle":
        return payload["module"].eval()
    try:
        model = artifact.template(
            {"arch": payload["arch"], "structure": payload["structure"], "kind": k, "recipe": payload.get("recipe", {})}
        )
        artifact.fill(model, {key: _unpack_v1(v) for key, v in payload["state"].items()}, assign=k == "torchao")
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: a version-1 artifact that does not rebuild ({type(exc).__name__}); "
            f"re-create it by running its config again"
        ) from None
    return model.eval()


def _unpack_v1(v):
    if not (isinstance(v, dict) and "sparse_shape" in v):
        return v
    n = int(np.prod(v["sparse_shape"]))
    mask = torch.from_numpy(np.unpackbits(v["mask"].numpy())[:n].astype(bool))
    out = torch.zeros(n, dtype=v["values"].dtype)
    out[mask] = v["values"]
    return out.view(v["sparse_shape"])


def load(
    path, key: str, arch: dict | None = None, trust: bool = False, targets=(), hint=artifact.TARGETS_HINT
) -> nn.Module:
    """The model in any accepted file. `arch` is the architecture a bare state dict loads into;
    `targets` are module prefixes an artifact's architecture may name beyond compressor's and
    torchvision's model factories."""
    path = Path(str(path))
    check_file(path, key, CHECKPOINTS)
    try:
        if artifact.is_safetensors(path):
            try:
                manifest, tensors = artifact.read(path)
            except Exception as exc:  # safetensors reports damage in several ways
                raise ConfigError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
            if manifest is None:
                return from_state(tensors, arch, path).eval()
            return artifact.from_manifest(manifest, tensors, path, targets, hint)
        obj = torch_load(path, trust)
        if isinstance(obj, dict) and str(obj.get("format", "")).startswith("compressor-artifact/"):
            return legacy(obj, path, targets, hint)
        if isinstance(obj, nn.Module):  # a pickled module, loaded only because it was trusted
            return from_state(obj.state_dict(), arch, path).eval()
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # Lightning .ckpt
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}: holds a {type(obj).__name__}, not a model; give {CHECKPOINTS}")
        return from_state(obj, arch, path).eval()
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
