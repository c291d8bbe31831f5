"""The artifact writer of release 1 (compressor-artifact/1, a torch.save'd model.pt), kept verbatim
so tests can make the files that earlier runs left and check that they still load."""

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT = "compressor-artifact/1"
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
DENSE_ABOVE = 0.9


def kind(model: nn.Module) -> str:
    if getattr(model, "compressor_recipe", None):
        return "ao_fx"
    tensors = list(model.parameters()) + list(model.buffers())
    if any(type(t).__module__.startswith("torchao") for t in tensors):
        return "torchao"
    if any(
        type(t) not in (torch.Tensor, nn.Parameter) or (t.is_floating_point() and t.dtype != torch.float32)
        for t in tensors
    ):
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
