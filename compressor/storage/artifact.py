"""The saved model: tensors in safetensors, everything else in a JSON manifest; nothing pickled.

One file, `model.safetensors`. The safetensors header's metadata holds the manifest:
- `arch`: the architecture config; every `_target_` in it must name a model factory
  (`compressor.models.`, `torchvision.models.` or a prefix the caller allows);
- `structure`: shape attributes and tensor shapes of the float model, so a channel-pruned net
  rebuilds without size mismatch;
- `kind` and `recipe`: float | torchao (dynamic int8) | ao_fx or pt2e (static/QAT int8) | cast (fp16/bf16),
  and what rebuilds that form from the float structure;
- `state`: how each state-dict entry is made of the stored tensors (plain, sparse, shared: a
  codebook and bit-packed DEFLATE-coded indices for a float tensor of at most 256 distinct
  values, int8 codes with their scales, a tensor subclass's inner tensors, tuples);
- `history`: what the stages did.

Loading builds the float architecture, re-applies the recipe to get the compressed form, and
fills it from the tensors. Every tensor of at least 256 elements that is at most 90% non-zero
(pruned float weights and int8 codes alike) is stored as a zlib-compressed bit mask plus its
non-zero values, so size on disk follows sparsity in every kind, and pruning and int8 compound (the coding:
compressor/storage/coding.py)."""

import errno
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from compressor.errors import ConfigError
from compressor.quant.ops import CAST_DTYPES, Cast, torchao_dynamic
from compressor.storage.coding import Writer, decode, dtype_of

FORMAT = "compressor-artifact/2"
FILENAME = "model.safetensors"
FACTORIES = ("compressor.models.", "torchvision.models.")
SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "in_features",
    "out_features",
    "num_features",
    "groups",
    "normalized_shape",
    "embedding_dim",
    "num_embeddings",
)


# -- what kind of model --------------------------------------------------------------------
def kind(model: nn.Module) -> str:
    recipe = getattr(model, "compressor_recipe", None)
    if recipe:
        return "pt2e" if recipe.get("api") == "pt2e" else "ao_fx"
    if isinstance(model, Cast):
        return "cast"
    tensors = list(model.parameters()) + list(model.buffers())
    if any(type(t).__module__.startswith("torchao") for t in tensors):
        return "torchao"
    odd = [
        type(t).__name__
        for t in tensors
        if type(t) not in (torch.Tensor, nn.Parameter) or (t.is_floating_point() and t.dtype != torch.float32)
    ]
    if odd:
        raise TypeError(f"cannot save a model holding {sorted(set(odd))} tensors: no artifact kind rebuilds them")
    return "float"


def recipe(model: nn.Module, k: str) -> dict:
    if k in ("ao_fx", "pt2e"):
        return dict(model.compressor_recipe)
    if k == "cast":
        return {"dtype": str(model.dtype).removeprefix("torch.")}
    return {}


# -- the float skeleton ------------------------------------------------------------------------
def structure(model: nn.Module) -> dict:
    return {
        "attrs": {
            name: {a: getattr(m, a) for a in SHAPE_ATTRS if isinstance(getattr(m, a, None), (int, tuple, list))}
            for name, m in model.named_modules()
        },
        "shapes": {
            k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)
        },
    }


TARGETS_HINT = "trust.targets"  # the job's key; compressor.predict's is --allow-target


def check_targets(arch, allowed=(), where="architecture", hint=TARGETS_HINT) -> None:
    """Every `_target_` in an architecture config must name a model factory: nothing else may be
    called on load. `hint`: how the caller's user adds a prefix."""
    prefixes = FACTORIES + tuple(allowed)
    if isinstance(arch, dict):
        target = arch.get("_target_")
        if target is not None and not (isinstance(target, str) and target.startswith(prefixes)):
            raise ConfigError(
                f"{where} names _target_ {target!r}, which is not a model factory; allowed: "
                f"{', '.join(prefixes)} (add a prefix with {hint})"
            )
        for value in arch.values():
            check_targets(value, allowed, where, hint)
    elif isinstance(arch, list):
        for value in arch:
            check_targets(value, allowed, where, hint)


def rebuild_float(arch: dict, struct: dict) -> nn.Module:
    """The architecture with every module and tensor at its saved shape (values left empty)."""
    model = instantiate(arch)
    for name, attrs in struct["attrs"].items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            if attr not in SHAPE_ATTRS or not isinstance(value, (int, list, tuple)):
                raise ValueError(f"structure sets {name}.{attr}, which is not a shape attribute")
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)  # JSON made tuples lists
    for key, (shape, dtype) in struct["shapes"].items():
        owner, attr = key.rsplit(".", 1) if "." in key else ("", key)
        module = model.get_submodule(owner)
        if isinstance(getattr(module, attr, None), nn.Parameter):
            setattr(module, attr, nn.Parameter(torch.zeros(shape)))
        elif attr in module._buffers:
            module._buffers[attr] = torch.zeros(shape, dtype=dtype_of(dtype.removeprefix("torch.")))
    return model


def template(manifest: dict) -> nn.Module:
    """The compressed model's form with placeholder values: the float skeleton, then its recipe."""
    model = rebuild_float(manifest["arch"], manifest["structure"])
    k = manifest["kind"]
    if k == "torchao":
        return torchao_dynamic(model)
    if k in ("ao_fx", "pt2e"):
        from compressor.quant import engine

        return engine("pt2e" if k == "pt2e" else "fx").rebuild(model, manifest["recipe"])
    if k == "cast":
        return Cast(model, CAST_DTYPES[manifest["recipe"]["dtype"]])
    if k != "float":
        raise ValueError(f"unknown kind {k!r}")
    return model


# -- save and load -----------------------------------------------------------------------------
def save(model: nn.Module, path, arch: dict, history: list, float_model: nn.Module | None = None) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half an artifact."""
    from safetensors.torch import save_file

    model = model.cpu().eval()
    k = kind(model)
    skeleton = float_model if float_model is not None and k != "float" else model
    if k == "cast" and float_model is None:
        skeleton = model.model
    writer = Writer()
    state = {key: writer.encode(key, v) for key, v in model.state_dict().items()}
    manifest = {
        "format": FORMAT,
        "kind": k,
        "arch": arch,
        "recipe": recipe(model, k),
        "structure": structure(skeleton),
        "state": state,
        "history": history,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(writer.tensors, tmp, metadata={"format": FORMAT, "manifest": json.dumps(manifest, default=str)})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename: the mode open() gives
        os.replace(tmp, path)
    except Exception as exc:  # safetensors reports a full disk as SafetensorError(IoError(StorageFull))
        if "StorageFull" in str(exc) or "No space left" in str(exc):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_safetensors(path) -> bool:
    """A safetensors file starts with the 8-byte length of a JSON header that opens with '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= os.path.getsize(path) - 8


def read(path) -> tuple[dict | None, dict]:
    """(manifest or None for a plain safetensors state dict, tensors), with no code run."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        return None, tensors
    return json.loads(meta["manifest"]), tensors


def load(path, targets=(), hint=TARGETS_HINT) -> nn.Module:
    """Rebuild the saved model. `targets`: module prefixes allowed in `arch` beyond FACTORIES.
    Raises ConfigError (one line naming the file) for anything that is not a whole artifact."""
    try:
        manifest, tensors = read(path)
    except Exception as exc:  # safetensors reports a damaged header or data in several ways
        raise ConfigError(
            f"{path}: not a readable safetensors file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'truncated'})"
        ) from None
    if manifest is None:
        raise ConfigError(
            f"{path}: a safetensors file without a compressor manifest (a plain state dict: "
            f"give it as model.checkpoint with the architecture in model.net)"
        )
    return from_manifest(manifest, tensors, path, targets, hint)


def fill(model: nn.Module, state: dict, assign: bool = False) -> None:
    """load_state_dict with the rebuilt model's own module versions (quantized modules read the
    version to know their state layout; a plain dict has none)."""
    state = OrderedDict(state)
    state._metadata = getattr(model.state_dict(), "_metadata", None)
    model.load_state_dict(state, assign=assign)


def from_manifest(manifest: dict, tensors: dict, path, targets=(), hint=TARGETS_HINT) -> nn.Module:
    check_targets(manifest.get("arch"), targets, f"{path}: the architecture", hint)
    try:
        model = template(manifest)
        own = model.state_dict()
        fill(
            model,
            {k: decode(spec, tensors, own.get(k)) for k, spec in manifest["state"].items()},
            assign=manifest["kind"] == "torchao",
        )
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{path}: does not rebuild into {manifest.get('arch', {}).get('_target_')} "
            f"({type(exc).__name__}: {first[:300]})"
        ) from None
    return model.eval()
