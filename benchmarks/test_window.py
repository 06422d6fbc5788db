"""Window/hop choice: quality at window edges vs latency and compute (arunet-small).

Edge error = windowed overlap-add output vs the network run on the whole signal at once, in
dB relative to the network's own contribution. Compute = streaming RT factor, 1 thread.
"""
from __future__ import annotations

import pytest
import torch

from rtbwe import models
from rtbwe.benchmarking import build_extender, edge_error_db, time_streaming

CONFIGS = [(512, 256), (768, 384), (960, 480), (960, 240), (1024, 512), (1920, 960)]


@pytest.mark.parametrize("window_samples, hop_samples", CONFIGS,
                         ids=[f"W{w}-H{h}" for w, h in CONFIGS])
def test_window_choice(benchmark, record, window_samples, hop_samples):
    torch.manual_seed(0)
    net = models.build("arunet-small").eval()
    torch.nn.init.normal_(net.out.weight, std=0.2)  # untrained nets may start as the identity
    error_db = edge_error_db(net, window_samples, hop_samples)
    bwe = build_extender("arunet-small", "eager", 1, 1000 * window_samples / 48000,
                         1000 * hop_samples / 48000)
    timing = benchmark.pedantic(time_streaming, args=(bwe, hop_samples, 2.0), rounds=1)
    record(edge_error_db=error_db, latency_ms=bwe.latency_ms, rt_factor=timing.rt_factor,
           p99_ms=timing.p99_ms)
