"""The saved model: what a run leaves and what the cache stores, reloadable into the compressed model.

A float model is stored as its architecture config, a structure record (shape attributes of
every module, so a channel-pruned net rebuilds without size mismatch) and its state dict, with
sparse tensors packed as a bit mask plus the non-zero values: size on disk follows sparsity.
A quantized model (packed int8 kernels, torchao tensors, fx graphs) is pickled whole."""
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


def is_torchao(model: nn.Module) -> bool:
    return any(type(p).__module__.startswith("torchao") for p in model.parameters())


def is_float_model(model: nn.Module) -> bool:
    if isinstance(model, torch.fx.GraphModule):
        return False
    for t in list(model.parameters()) + list(model.buffers()):
        if type(t) not in (torch.Tensor, nn.Parameter) or (t.is_floating_point() and t.dtype != torch.float32):
            return False
    return not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def pack(t: torch.Tensor):
    if t.dtype != torch.float32 or t.numel() < 256:
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
    return {name: {a: getattr(m, a) for a in SHAPE_ATTRS if isinstance(getattr(m, a, None), (int, tuple, list))}
            for name, m in model.named_modules()}


def save(model: nn.Module, path, arch: dict, history: list) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half an artifact."""
    payload = {"format": FORMAT, "arch": arch, "history": history}
    model = model.cpu().eval()
    if is_float_model(model):
        payload["structure"] = structure(model)
        payload["state"] = {k: pack(v.detach()) for k, v in model.state_dict().items()}
    elif is_torchao(model):  # torchao tensors do not pickle inside a module; their state dict does
        payload["structure"] = structure(model)
        payload["state"] = model.state_dict()
        payload["torchao"] = "int8_dynamic_linear"
    else:
        payload["module"] = model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(path) -> nn.Module:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a compressor artifact (format {payload.get('format')!r})")
    if "module" in payload:
        return payload["module"].eval()
    model = instantiate(payload["arch"])
    state = {k: unpack(v) for k, v in payload["state"].items()}
    for name, attrs in payload["structure"].items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    for key, value in state.items():  # give every tensor its saved shape before loading values
        owner, attr = key.rsplit(".", 1) if "." in key else ("", key)
        module = model.get_submodule(owner)
        if isinstance(getattr(module, attr, None), nn.Parameter):
            setattr(module, attr, nn.Parameter(torch.empty(value.shape)))
        elif attr in module._buffers:
            module._buffers[attr] = torch.empty(value.shape, dtype=value.dtype)
    if payload.get("torchao"):
        from compressor.callbacks.quant import torchao_dynamic

        model = torchao_dynamic(model)
    model.load_state_dict(state, assign=bool(payload.get("torchao")))
    return model.eval()


def history(path) -> list:
    return torch.load(path, map_location="cpu", weights_only=False)["history"]
