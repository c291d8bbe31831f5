"""The saved model: tensors in safetensors, everything else in a JSON manifest; nothing pickled.

One file, `model.safetensors`. The safetensors header's metadata holds the manifest:
- `arch`: the architecture config; every `_target_` in it must name a model factory
  (`compressor.models.`, `torchvision.models.` or a prefix the caller allows);
- `structure`: shape attributes and tensor shapes of the float model, so a channel-pruned net
  rebuilds without size mismatch;
- `kind` and `recipe`: float | torchao (dynamic int8) | ao_fx (static/QAT int8) | cast (fp16/bf16),
  and what rebuilds that form from the float structure;
- `state`: how each state-dict entry is made of the stored tensors (plain, sparse, shared: a
  codebook and bit-packed DEFLATE-coded indices for a float tensor of at most 256 distinct
  values, int8 codes with their scales, a tensor subclass's inner tensors, tuples);
- `history`: what the stages did.

Loading builds the float architecture, re-applies the recipe to get the compressed form, and
fills it from the tensors. Every tensor of at least 256 elements that is at most 90% non-zero
(pruned float weights and int8 codes alike) is stored as a zlib-compressed bit mask plus its
non-zero values, so size on disk follows sparsity in every kind, and pruning and int8 compound."""
import errno
import json
import os
import tempfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from compressor.errors import ConfigError

FORMAT = "compressor-artifact/2"
FILENAME = "model.safetensors"
FACTORIES = ("compressor.models.", "torchvision.models.")
SHAPE_ATTRS = ("in_channels", "out_channels", "in_features", "out_features", "num_features", "groups",
               "normalized_shape", "embedding_dim", "num_embeddings")
DENSE_ABOVE = 0.9  # a tensor denser than this is cheaper stored dense
SPARSE_MIN = 256   # smaller tensors are stored dense
SHARED_MAX = 256   # a float tensor of at most this many distinct values is stored as codebook + codes
CAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


# -- what kind of model --------------------------------------------------------------------
def kind(model: nn.Module) -> str:
    from compressor.callbacks.quant import Cast

    if getattr(model, "compressor_recipe", None):
        return "ao_fx"
    if isinstance(model, Cast):
        return "cast"
    tensors = list(model.parameters()) + list(model.buffers())
    if any(type(t).__module__.startswith("torchao") for t in tensors):
        return "torchao"
    odd = [type(t).__name__ for t in tensors if type(t) not in (torch.Tensor, nn.Parameter)
           or (t.is_floating_point() and t.dtype != torch.float32)]
    if odd:
        raise TypeError(f"cannot save a model holding {sorted(set(odd))} tensors: no artifact kind rebuilds them")
    return "float"


def recipe(model: nn.Module, k: str) -> dict:
    if k == "ao_fx":
        return dict(model.compressor_recipe)
    if k == "cast":
        return {"dtype": str(model.dtype).removeprefix("torch.")}
    return {}


# -- tensors <-> manifest entries ----------------------------------------------------------
class _Writer:
    """Turns state-dict values into (safetensors tensors, JSON spec)."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def plain(self, name: str, t: torch.Tensor) -> dict:
        t = t.detach().cpu()
        if t.dtype != torch.bool and t.numel() >= SPARSE_MIN:
            mask = t != 0
            if mask.float().mean() <= DENSE_ABOVE:
                bits = zlib.compress(np.packbits(mask.flatten().numpy()).tobytes(), 9)
                self.tensors[f"{name}#mask"] = torch.frombuffer(bytearray(bits), dtype=torch.uint8)
                return {"sparse": name, "shape": list(t.shape), "values": self.shared(f"{name}#values", t[mask])}
        return self.shared(name, t)

    def shared(self, name: str, t: torch.Tensor) -> dict:
        """A float tensor of at most SHARED_MAX distinct values (weight sharing) as its codebook and
        bit-packed indices, DEFLATE-coded (LZ77 + Huffman, the coding step of Deep Compression)."""
        if t.is_floating_point() and t.numel() >= SPARSE_MIN:
            codebook, index = torch.unique(t.flatten(), return_inverse=True)
            if codebook.numel() <= SHARED_MAX:
                width = max(1, (codebook.numel() - 1).bit_length())
                bits = np.unpackbits(index.to(torch.uint8).numpy()[:, None], axis=1)[:, 8 - width:]
                codes = zlib.compress(np.packbits(bits.flatten()).tobytes(), 9)
                self.tensors[f"{name}#codebook"] = codebook.contiguous()
                self.tensors[f"{name}#codes"] = torch.frombuffer(bytearray(codes), dtype=torch.uint8)
                return {"shared": name, "shape": list(t.shape), "bits": width}
        self.tensors[name] = t.contiguous().clone()  # own storage: safetensors refuses shared tensors
        return {"tensor": name}

    def encode(self, name: str, v) -> dict:
        if isinstance(v, torch.Tensor) and v.is_quantized:
            spec = {"qtensor": self.plain(name, v.int_repr()), "dtype": str(v.dtype).removeprefix("torch.")}
            if v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                spec.update(scales=self.plain(f"{name}#scales", v.q_per_channel_scales()),
                            zero_points=self.plain(f"{name}#zero_points", v.q_per_channel_zero_points()),
                            axis=v.q_per_channel_axis())
            else:
                spec.update(scale=v.q_scale(), zero_point=v.q_zero_point())
            return spec
        if isinstance(v, torch.Tensor) and type(v) not in (torch.Tensor, nn.Parameter):
            names, _ = v.__tensor_flatten__()  # a tensor subclass (torchao): store its inner tensors
            return {"subclass": {n: self.encode(f"{name}#{n}", getattr(v, n)) for n in names}}
        if isinstance(v, torch.Tensor):
            return self.plain(name, v)
        if isinstance(v, (tuple, list)):
            return {"seq": [self.encode(f"{name}#{i}", x) for i, x in enumerate(v)]}
        if isinstance(v, torch.dtype):
            return {"dtype": str(v).removeprefix("torch.")}
        if v is None or isinstance(v, (bool, int, float, str)):
            return {"value": v}
        raise TypeError(f"cannot store a {type(v).__name__} at {name}")


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return value


def _inflate(blob: torch.Tensor, size: int) -> np.ndarray:
    """A zlib-compressed bit mask of exactly `size` bytes; never inflates past it (no zip bomb)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob.numpy().tobytes(), size)
    except zlib.error as exc:
        raise ValueError(f"damaged sparse mask ({exc})") from None
    if len(raw) != size or not inflater.eof or inflater.unconsumed_tail:
        raise ValueError(f"sparse mask of {len(raw)} bytes, expected {size}")
    return np.frombuffer(raw, dtype=np.uint8)


def _decode(spec: dict, tensors: dict, template=None):
    """The state-dict value a spec describes; `template` is the rebuilt model's own value at that
    key, which supplies a tensor subclass's type and constants (never read from the file)."""
    if "tensor" in spec:
        return tensors[spec["tensor"]]
    if "shared" in spec:
        codebook, shape, width = tensors[f"{spec['shared']}#codebook"], spec["shape"], int(spec["bits"])
        n = int(np.prod(shape))
        if not 1 <= width <= 8 or codebook.numel() > 2 ** width:
            raise ValueError(f"a shared tensor of {codebook.numel()} values in {width}-bit codes")
        bits = np.unpackbits(_inflate(tensors[f"{spec['shared']}#codes"], (n * width + 7) // 8))[:n * width]
        index = np.packbits(np.concatenate([np.zeros((n, 8 - width), np.uint8), bits.reshape(n, width)], 1), axis=1)
        index = torch.from_numpy(index.flatten().astype(np.int64))
        if n and int(index.max()) >= codebook.numel():
            raise ValueError("a shared tensor's code points past its codebook")
        return codebook[index].view(shape)
    if "sparse" in spec:
        shape = spec["shape"]
        values = _decode(spec["values"], tensors) if "values" in spec else tensors[f"{spec['sparse']}#values"]
        n = int(np.prod(shape))
        mask = torch.from_numpy(np.unpackbits(_inflate(tensors[f"{spec['sparse']}#mask"], (n + 7) // 8))[:n].astype(bool))
        out = torch.zeros(n, dtype=values.dtype)
        out[mask] = values
        return out.view(shape)
    if "qtensor" in spec:
        ints = _decode(spec["qtensor"], tensors)
        if "axis" in spec:
            return torch._make_per_channel_quantized_tensor(ints, _decode(spec["scales"], tensors),
                                                            _decode(spec["zero_points"], tensors), int(spec["axis"]))
        return torch._make_per_tensor_quantized_tensor(ints, float(spec["scale"]), int(spec["zero_point"]))
    if "subclass" in spec:
        if template is None or not hasattr(template, "__tensor_flatten__"):
            raise ValueError("a tensor subclass where the rebuilt model has a plain value")
        names, ctx = template.__tensor_flatten__()
        if sorted(names) != sorted(spec["subclass"]):
            raise ValueError(f"inner tensors {sorted(spec['subclass'])}, expected {sorted(names)}")
        inner = {n: _decode(spec["subclass"][n], tensors, getattr(template, n)) for n in names}
        return type(template).__tensor_unflatten__(inner, ctx, template.size(), template.stride())
    if "seq" in spec:
        parts = template if isinstance(template, (tuple, list)) else [None] * len(spec["seq"])
        return tuple(_decode(s, tensors, t) for s, t in zip(spec["seq"], parts))
    if "dtype" in spec:
        return _dtype(spec["dtype"])
    if "value" in spec:
        return spec["value"]
    raise ValueError(f"unknown state entry {sorted(spec)}")


# -- the float skeleton ------------------------------------------------------------------------
def structure(model: nn.Module) -> dict:
    return {"attrs": {name: {a: getattr(m, a) for a in SHAPE_ATTRS if isinstance(getattr(m, a, None), (int, tuple, list))}
                      for name, m in model.named_modules()},
            "shapes": {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()
                       if isinstance(v, torch.Tensor)}}


TARGETS_HINT = "trust.targets"  # the job's key; compressor.predict's is --allow-target


def check_targets(arch, allowed=(), where="architecture", hint=TARGETS_HINT) -> None:
    """Every `_target_` in an architecture config must name a model factory: nothing else may be
    called on load. `hint`: how the caller's user adds a prefix."""
    prefixes = FACTORIES + tuple(allowed)
    if isinstance(arch, dict):
        target = arch.get("_target_")
        if target is not None and not (isinstance(target, str) and target.startswith(prefixes)):
            raise ConfigError(f"{where} names _target_ {target!r}, which is not a model factory; allowed: "
                              f"{', '.join(prefixes)} (add a prefix with {hint})")
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
            module._buffers[attr] = torch.zeros(shape, dtype=_dtype(dtype.removeprefix("torch.")))
    return model


def template(manifest: dict) -> nn.Module:
    """The compressed model's form with placeholder values: the float skeleton, then its recipe."""
    model = rebuild_float(manifest["arch"], manifest["structure"])
    k = manifest["kind"]
    if k == "torchao":
        from compressor.callbacks.quant import torchao_dynamic

        return torchao_dynamic(model)
    if k == "ao_fx":
        from compressor.callbacks import _ao_fx

        return _ao_fx.rebuild(model, manifest["recipe"])
    if k == "cast":
        from compressor.callbacks.quant import Cast

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
    writer = _Writer()
    state = {key: writer.encode(key, v) for key, v in model.state_dict().items()}
    manifest = {"format": FORMAT, "kind": k, "arch": arch, "recipe": recipe(model, k),
                "structure": structure(skeleton),
                "state": state, "history": history}
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
        raise ConfigError(f"{path}: not a readable safetensors file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'truncated'})") from None
    if manifest is None:
        raise ConfigError(f"{path}: a safetensors file without a compressor manifest (a plain state dict: "
                          f"give it as model.checkpoint with the architecture in model.net)")
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
        fill(model, {k: _decode(spec, tensors, own.get(k)) for k, spec in manifest["state"].items()},
             assign=manifest["kind"] == "torchao")
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: does not rebuild into {manifest.get('arch', {}).get('_target_')} "
                          f"({type(exc).__name__}: {first[:300]})") from None
    return model.eval()
