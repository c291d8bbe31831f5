"""Each distillation term against a value computed by hand on fixed tensors."""

import math

import pytest
import torch

from compressor.modules import losses

S = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
T = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 4.0]])
Y = torch.tensor([0, 2])


def softmax(row, t=1.0):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_ce_by_hand():
    expected = sum(-math.log(softmax(S[i].tolist())[Y[i]]) for i in range(2)) / 2
    assert losses.ce(S, T, Y).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_kl_by_hand_scaled_by_t_squared(t):
    total = 0.0
    for i in range(2):
        p, q = softmax(T[i].tolist(), t), softmax(S[i].tolist(), t)
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    assert losses.kl(S, T, Y, temperature=t).item() == pytest.approx(total / 2 * t * t, rel=1e-5)


def test_cosine_by_hand():
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    # 1 - cos: row 0 orthogonal (1 - 0), row 1 parallel (1 - 1)
    assert losses.cosine(s_hidden=a, t_hidden=b).item() == pytest.approx(0.5, abs=1e-6)


def test_feature_mse_by_hand():
    a, b = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 3.0)
    assert losses.feature_mse(s_feature=a, t_feature=b).item() == pytest.approx(9.0)


def test_dkd_by_hand():
    t, alpha, beta = 2.0, 1.0, 8.0
    total_t, total_n = 0.0, 0.0
    for i in range(2):
        ps, pt = softmax(S[i].tolist(), t), softmax(T[i].tolist(), t)
        g = int(Y[i])
        bs, bt = [ps[g], 1 - ps[g]], [pt[g], 1 - pt[g]]
        total_t += sum(x * (math.log(x) - math.log(y)) for x, y in zip(bt, bs))
        others = [k for k in range(3) if k != g]
        qs = softmax([S[i, k].item() for k in others], t)
        qt = softmax([T[i, k].item() for k in others], t)
        total_n += sum(x * (math.log(x) - math.log(y)) for x, y in zip(qt, qs))
    expected = (alpha * total_t / 2 + beta * total_n / 2) * t * t
    assert losses.dkd(S, T, Y, temperature=t, alpha=alpha, beta=beta).item() == pytest.approx(expected, rel=1e-4)


def test_vector_pools_feature_maps():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert losses.vector(x).item() == pytest.approx(7.5)
