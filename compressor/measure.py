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


def channels_last(model: nn.Module, run, device="cpu"):
    """`run()` with `model`'s conv weights in the channels-last layout, on the CPU, where oneDNN's
    convolutions run faster (docs/techniques.md gives the measurements). A forward that cannot take it (a
    `x.view(n, -1)` of a conv's output) runs contiguous instead. The weights are contiguous after
    it, the layout everything else (saving, export, quantization, timing) reads. Float rounding only."""
    if str(device) != "cpu":
        return run()
    try:
        model.to(memory_format=torch.channels_last)
        return run()
    except RuntimeError:  # a genuine failure fails again below, contiguous, and is raised from there
        model.to(memory_format=torch.contiguous_format)
        return run()
    finally:
        model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def predict(model, loader, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a loader (any callable model: nn.Module or ONNX session wrapper); a
    torch model runs in the channels-last layout on the CPU (`channels_last`)."""
    if isinstance(model, nn.Module):
        model.eval()
        return channels_last(model, lambda: _predict(model, loader, device), device)
    return _predict(model, loader, device)


def _predict(model, loader, device) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Which images the model gets right: a bool each, in the loader's order."""
    return logits.argmax(1) == labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def accuracy_of(model, loader) -> float:
    """Top-1 accuracy of `model` over a loader."""
    return accuracy(*predict(model, loader))


def size_mb(path) -> float:
    """Bytes on disk; an OpenVINO IR counts its graph (.xml) and its weights (.bin)."""
    path = str(path)
    extra = os.path.getsize(path[:-4] + ".bin") if path.endswith(".xml") else 0
    return (os.path.getsize(path) + extra) / 2**20


def parameters(model: nn.Module) -> dict:
    params = [p for p in model.parameters()]
    total = sum(p.numel() for p in params)
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in params)
    return {
        "compress/params": sum(p.numel() for p in params if p.requires_grad) or total,
        "compress/nonzero_params": nonzero,
        "compress/sparsity": 1 - nonzero / total if total else 0.0,
    }


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
def latency_ms(
    model,
    example: torch.Tensor,
    batch: int,
    threads: int = 1,
    warmup: int = 2,
    reps: int = 20,
    max_seconds: float = 2.0,
) -> float:
    """Median milliseconds per image at the given batch size, after warm-up, threads pinned.
    At least 3 timed calls, then up to `reps` while within `max_seconds` (slow models stop early)."""
    if isinstance(model, nn.Module):
        model.eval()
    x = example[:1].repeat(batch, *[1] * (example.dim() - 1))
    with pinned_threads(threads):
        for _ in range(warmup):
            model(x)
        times, start = [], time.perf_counter()
        while len(times) < 3 or (len(times) < reps and time.perf_counter() - start < max_seconds):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times) / batch


def _interleaved(models: dict, example: torch.Tensor, batches, threads: int, reps: int, count: int) -> dict:
    """{name: {batch: [ms per image, one per round]}}: each round times every model at each batch in
    turn, so a load spike on a shared machine hits all of them alike."""
    seen = {name: {batch: [] for batch in batches} for name in models}
    for _ in range(count):
        for batch in batches:
            for name, model in models.items():
                seen[name][batch].append(
                    latency_ms(model, example, batch, threads, reps=reps if batch == 1 else max(3, reps // 4))
                )
    return seen


def latencies(models: dict, example: torch.Tensor, threads: int = 1, reps: int = 20, rounds: int = 3) -> dict:
    """Latency of several models measured side by side (interleaved rounds), the median over rounds kept."""
    seen = _interleaved(models, example, (1, 64), threads, reps, rounds)
    return {
        name: {
            "latency/threads": threads,
            "latency/b1_ms": statistics.median(v[1]),
            "latency/b64_ms": statistics.median(v[64]),
        }
        for name, v in seen.items()
    }


def rounds(models: dict, example: torch.Tensor, batch: int, threads: int = 1, reps: int = 20, count: int = 5) -> dict:
    """Per model, its latency at `batch` (ms per image) in each of `count` interleaved rounds: the
    spread over rounds is each model's timing noise here."""
    return {name: v[batch] for name, v in _interleaved(models, example, (batch,), threads, reps, count).items()}


def profile(model, example: torch.Tensor, artifact=None, float_model: nn.Module | None = None) -> dict:
    """Size, parameters and MACs of one model (latency: `latencies`, side by side with the baseline).

    MACs and parameter counts come from `float_model` when the model itself is quantized
    (FlopCounterMode and .parameters() do not see packed int8 weights)."""
    counted = float_model if float_model is not None else model
    out = {**parameters(counted), "compress/macs": macs(counted, example)}
    if artifact is not None:
        out["compress/size_mb"] = size_mb(artifact)
    return out
