"""Distillation loss terms and the forward-hook taps that feed them.

Features are reached by module path (e.g. `features.3`), so any teacher/student pair works
without touching model code. Every term takes (student logits, teacher logits, labels,
student tap, teacher tap) and returns a scalar."""

import torch
import torch.nn.functional as F
from torch import nn

from compressor.errors import ConfigError


class Tap:
    """Keeps the latest output of the module at `path` (a forward hook). With no path (a model
    whose config names none), the input of its last Linear: the representation a classifier head reads."""

    def __init__(self, model: nn.Module, path: str | None, key: str):
        names = [n for n, _ in model.named_modules() if n]
        listed = f"modules: {', '.join(names[:60])}{' ...' if len(names) > 60 else ''}"
        self.output = None
        if path is None:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ConfigError(
                    f"{key} is not set and {type(model).__name__} has no Linear layer whose input "
                    f"to tap; set it to a module path; {listed}"
                )
            self.handle = model.get_submodule(linears[-1]).register_forward_hook(self._keep_input)
            return
        if path not in names:
            raise ConfigError(f"{key}={path!r} is not a module of {type(model).__name__}; {listed}")
        self.handle = model.get_submodule(path).register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.output = output

    def _keep_input(self, module, inputs, output):
        self.output = inputs[0]

    def remove(self):
        self.handle.remove()


def vector(t: torch.Tensor) -> torch.Tensor:
    """A feature map or vector as (N, D): global-average-pooled when it is 4-D."""
    return t.mean((2, 3)) if t.dim() == 4 else t.flatten(1)


def ce(s_logits, t_logits, labels, **_):
    return F.cross_entropy(s_logits, labels)


def kl(s_logits, t_logits, labels, temperature: float = 4.0, **_):
    """Hinton et al.: KL(teacher || student) on softened outputs, scaled by T^2."""
    t = temperature
    return F.kl_div(F.log_softmax(s_logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean") * t * t


def cosine(s_hidden, t_hidden, **_):
    """nn.CosineEmbeddingLoss with target 1: mean of 1 - cos(student, teacher)."""
    target = torch.ones(s_hidden.shape[0], device=s_hidden.device)
    return F.cosine_embedding_loss(s_hidden, t_hidden, target)


def feature_mse(s_feature, t_feature, **_):
    return F.mse_loss(s_feature, t_feature)


def dkd(s_logits, t_logits, labels, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0, **_):
    """Decoupled KD (Zhao et al., CVPR 2022): alpha * TCKD + beta * NCKD, both scaled by T^2."""
    t = temperature
    gt = F.one_hot(labels, s_logits.shape[1]).bool()
    p_s, p_t = F.softmax(s_logits / t, 1), F.softmax(t_logits / t, 1)
    # target-class KD: binary (target, rest) distributions
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1).clamp_min(1e-8)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1).clamp_min(1e-8)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * t * t
    # non-target KD: distributions over the other classes only
    log_q_s = F.log_softmax(s_logits / t - 1000.0 * gt, 1)
    q_t = F.softmax(t_logits / t - 1000.0 * gt, 1)
    nckd = F.kl_div(log_q_s, q_t, reduction="batchmean") * t * t
    return alpha * tckd + beta * nckd


TERMS = {"ce": ce, "kl": kl, "cosine": cosine, "feature_mse": feature_mse, "dkd": dkd}
