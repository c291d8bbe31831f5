"""The saved model: what a run leaves and what the cache stores, reloadable into the compressed model.

Every artifact holds the architecture config, a structure record (shape attributes and tensor
shapes of the float model, so a channel-pruned net rebuilds without size mismatch), the state
dict, and the quantization recipe when there is one:
- float: sparse tensors are packed as a bit mask plus the non-zero values, so size on disk
  follows sparsity;
- torchao dynamic int8: int8 tensor state, rebuilt by re-applying the same torchao config;
- torch.ao FX static/QAT int8: packed int8 state, rebuilt by re-running prepare/convert on the
  float structure (pickling the fx GraphModule itself fails in torch 2.14);
- fp16/bf16 casts: the module pickled whole."""
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

FORMAT = "compressor-artifact/1"
SHAPE_ATTRS = ("in_channels", "out_channels", "in_features", "out_features", "num_features", "groups",
               "normalized_shape", "embedding_dim", "num_embeddings")
DENSE_ABOVE = 0.9  # a tensor denser than this is cheaper stored dense


def kind(model: nn.Module) -> str:
    if getattr(model, "compressor_recipe", None):
        return "ao_fx"
    tensors = list(model.parameters()) + list(model.buffers())
    if any(type(t).__module__.startswith("torchao") for t in tensors):
        return "torchao"
    if any(type(t) not in (torch.Tensor, nn.Parameter) or (t.is_floating_point() and t.dtype != torch.float32)
           for t in tensors):
        return "pickle"
    return "float"


def pack(t: torch.Tensor):
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.numel() < 256:
        return t
    mask = t != 0
    if mask.float().mean() > DENSE_ABOVE:
        return t
    bits = torch.from_numpy(np.packbits(mask.flatten().numpy()))
    return {"sparse_shape": list(t.shape), "mask": bits, "values": t[mask].clone()}


def unpack(v):
    if not isinstance(v, dict):
        return v
    n = int(np.prod(v["sparse_shape"]))
    mask = torch.from_numpy(np.unpackbits(v["mask"].numpy())[:n].astype(bool))
    out = torch.zeros(n, dtype=v["values"].dtype)
    out[mask] = v["values"]
    return out.view(v["sparse_shape"])


def structure(model: nn.Module) -> dict:
    return {"attrs": {name: {a: getattr(m, a) for a in SHAPE_ATTRS if isinstance(getattr(m, a, None), (int, tuple, list))}
                      for name, m in model.named_modules()},
            "shapes": {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()
                       if isinstance(v, torch.Tensor)}}


def save(model: nn.Module, path, arch: dict, history: list, float_model: nn.Module | None = None) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half an artifact."""
    model = model.cpu().eval()
    k = kind(model)
    payload = {"format": FORMAT, "arch": arch, "history": history, "kind": k}
    if k == "pickle":
        payload["module"] = model
    else:
        payload["structure"] = structure(float_model if float_model is not None and k != "float" else model)
        state = model.state_dict()
        payload["state"] = {key: pack(v.detach()) for key, v in state.items()} if k == "float" else state
        if k == "ao_fx":
            payload["recipe"] = dict(model.compressor_recipe)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def rebuild_float(arch: dict, struct: dict) -> nn.Module:
    """The architecture with every module and tensor at its saved shape (values left empty)."""
    model = instantiate(arch)
    for name, attrs in struct["attrs"].items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    for key, (shape, dtype) in struct["shapes"].items():
        owner, attr = key.rsplit(".", 1) if "." in key else ("", key)
        module = model.get_submodule(owner)
        if isinstance(getattr(module, attr, None), nn.Parameter):
            setattr(module, attr, nn.Parameter(torch.zeros(shape)))
        elif attr in module._buffers:
            module._buffers[attr] = torch.zeros(shape, dtype=getattr(torch, dtype.removeprefix("torch.")))
    return model


def load(path) -> nn.Module:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a compressor artifact")
    if payload["kind"] == "pickle":
        return payload["module"].eval()
    model = rebuild_float(payload["arch"], payload["structure"])
    state = payload["state"]
    if payload["kind"] == "float":
        model.load_state_dict({k: unpack(v) for k, v in state.items()})
    elif payload["kind"] == "torchao":
        from compressor.callbacks.quant import torchao_dynamic

        model = torchao_dynamic(model)
        model.load_state_dict(state, assign=True)
    else:
        from compressor.callbacks import _ao_fx

        model = _ao_fx.rebuild(model, payload["recipe"])
        model.load_state_dict(state)
    return model.eval()
