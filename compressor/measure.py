"""Every run is measured by this code and nothing else: accuracy, size on disk, parameters,
MACs, sparsity and latency."""
import os
import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def pinned_threads(n: int):
    """Pin torch's intra-op threads while timing; a busy 2-core box is 40x slower with 2 OpenMP threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def predict(model, loader, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a loader (any callable model: nn.Module or ONNX session wrapper)."""
    if isinstance(model, nn.Module):
        model.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def size_mb(path) -> float:
    return os.path.getsize(path) / 2**20


def parameters(model: nn.Module) -> dict:
    params = [p for p in model.parameters()]
    total = sum(p.numel() for p in params)
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in params)
    return {"compress/params": sum(p.numel() for p in params if p.requires_grad) or total,
            "compress/nonzero_params": nonzero,
            "compress/sparsity": 1 - nonzero / total if total else 0.0}


def layer_sparsity(model: nn.Module) -> dict:
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and isinstance(weight, torch.Tensor):
            out[name] = 1 - int(torch.count_nonzero(weight.detach())) / weight.numel()
    return out


@torch.no_grad()
def macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (FLOPs / 2 as torch counts them)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(example[:1])
    return counter.get_total_flops() // 2


@torch.no_grad()
def latency_ms(model, example: torch.Tensor, batch: int, threads: int = 1, warmup: int = 3,
               reps: int = 20, min_seconds: float = 0.2) -> float:
    """Median milliseconds per image at the given batch size, after warm-up, threads pinned."""
    if isinstance(model, nn.Module):
        model.eval()
    x = example[:1].repeat(batch, *[1] * (example.dim() - 1))
    with pinned_threads(threads):
        for _ in range(warmup):
            model(x)
        times, start = [], time.perf_counter()
        while len(times) < reps or (time.perf_counter() - start < min_seconds and len(times) < 10 * reps):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times) / batch


def profile(model, example: torch.Tensor, artifact=None, threads: int = 1, reps: int = 20,
            float_model: nn.Module | None = None) -> dict:
    """The figures every results.json carries for one model.

    MACs and parameter counts come from `float_model` when the model itself is quantized
    (FlopCounterMode and .parameters() do not see packed int8 weights)."""
    counted = float_model if float_model is not None else model
    out = {**parameters(counted), "compress/macs": macs(counted, example),
           "latency/threads": threads,
           "latency/b1_ms": latency_ms(model, example, 1, threads, reps=reps),
           "latency/b64_ms": latency_ms(model, example, 64, threads, reps=max(3, reps // 4))}
    if artifact is not None:
        out["compress/size_mb"] = size_mb(artifact)
    return out
