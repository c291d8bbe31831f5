"""Latency is measured with the requested thread count, and the caller's count is restored."""

import pytest
import torch
from torch import nn

from compressor import measure


class ThreadSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.threads = []

    def forward(self, x):
        self.threads.append(torch.get_num_threads())
        return x.flatten(1)


@pytest.mark.parametrize("requested", [1, 2])
def test_latency_runs_at_the_requested_threads_and_restores_them(requested):
    before = torch.get_num_threads()
    other = 3 if requested != 3 else 4
    torch.set_num_threads(other)
    try:
        spy = ThreadSpy()
        measure.latency_ms(spy, torch.zeros(1, 1, 4, 4), batch=1, threads=requested, reps=3)
        assert spy.threads and set(spy.threads) == {requested}
        assert torch.get_num_threads() == other
        spy.threads.clear()
        out = measure.latencies({"spy": spy}, torch.zeros(1, 1, 4, 4), threads=requested, reps=3, rounds=1)
        assert set(spy.threads) == {requested} and out["spy"]["latency/threads"] == requested
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)
