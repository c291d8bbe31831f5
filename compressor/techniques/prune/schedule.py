"""How much pruning removes, as pure functions: the gradual schedule of the amount over epochs
(`cubic`) and LAMP's per-layer counts for one global amount (`lamp_counts`). The pruning callback
(callback.py) applies them; a function of the epoch is what makes a resumed fit prune exactly like
an uninterrupted one."""

import torch


def cubic(epoch: int, amount: float, ramp_epochs: int) -> float:
    """Zhu & Gupta (2017): s_t = s_f * (1 - (1 - t/n)^3), from 0 at epoch 0 to `amount` at `ramp_epochs`.
    A pure function of the epoch, so a resumed run prunes exactly like an uninterrupted one."""
    if ramp_epochs <= 0:
        return amount
    progress = min(max(epoch, 0) / ramp_epochs, 1.0)
    return amount * (1 - (1 - progress) ** 3)


def lamp_counts(weights: dict, amount: float) -> dict:
    """How many weights of each layer LAMP prunes for a global `amount` (Lee et al., ICLR 2021,
    "Layer-adaptive sparsity for the magnitude-based pruning"). A weight's score is its square
    over the sum of the squares of the weights of its layer at least as large as it; the lowest
    scores go, across all layers. Within a layer the order is plain magnitude, so an L1 prune of
    each layer by its count removes exactly these weights. Unlike a global magnitude ranking, a
    layer of small weights is not emptied for being small: every layer's largest weight scores 1."""
    owner, scores = [], []  # owner: the index of each score's layer
    for i, w in enumerate(weights.values()):
        squares = torch.sort(w.detach().flatten().float() ** 2).values
        tail = torch.flip(torch.cumsum(torch.flip(squares, [0]), 0), [0])  # sum of squares from here up
        scores.append(squares / tail.clamp_min(torch.finfo(torch.float32).tiny))
        owner.append(torch.full_like(squares, i, dtype=torch.long))
    owner = torch.cat(owner)
    order = torch.argsort(torch.cat(scores), stable=True)[: round(amount * len(owner))]
    counts = torch.bincount(owner[order], minlength=len(weights))
    return dict(zip(weights, counts.tolist()))
