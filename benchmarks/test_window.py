"""Window/hop choice: quality at window edges vs latency and compute (arunet-small).

Quality, with the shipped default weights (trained arunet-small, 6 kHz): ΔSNR on the bundled
demo clip (8 s of test-split music, never trained on) through ``BandwidthExtender`` at each
geometry, for the seen (Chebyshev-1 6) and unseen (Butterworth 6) filters, averaged over three
hop-grid phases (``rtbwe.benchmarking.window_quality``). The whole-clip ΔSNR (no windows) is
the ceiling every geometry is compared with.

Edge error, with random weights: windowed overlap-add vs the network run on the whole signal,
in dB relative to the network's own contribution (``edge_error_db``; independent of training).

Compute = streaming RT factor, eager, 1 thread, host block = hop.
"""
from __future__ import annotations

import pytest
import torch

from rtbwe import models
from rtbwe.benchmarking import build_extender, edge_error_db, time_streaming, window_quality

CONFIGS = [(512, 256), (768, 384), (960, 480), (960, 240), (1024, 512), (2048, 1024),
           (1920, 960)]


@pytest.fixture(scope="module")
def demo_reference():
    import soundfile as sf

    from rtbwe.demo import DEMO_CLIP

    audio, rate = sf.read(str(DEMO_CLIP), dtype="float32")
    assert rate == 48000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="module")
def trained_model():
    from rtbwe.weights import ModelLoadingError, load_model

    try:
        return load_model("default").eval()
    except ModelLoadingError as err:
        pytest.skip(f"needs the shipped default weights: {err}")


@pytest.mark.parametrize("window_samples, hop_samples", CONFIGS,
                         ids=[f"W{w}-H{h}" for w, h in CONFIGS])
def test_window_choice(benchmark, record, demo_reference, trained_model, window_samples,
                       hop_samples):
    quality = window_quality(trained_model, window_samples, hop_samples, demo_reference)
    torch.manual_seed(0)
    net = models.build("arunet-small").eval()
    torch.nn.init.normal_(net.out.weight, std=0.2)  # untrained nets may start as the identity
    error_db = edge_error_db(net, window_samples, hop_samples)
    bwe = build_extender("arunet-small", "eager", 1, 1000 * window_samples / 48000,
                         1000 * hop_samples / 48000)
    timing = benchmark.pedantic(time_streaming, args=(bwe, hop_samples, 2.0), rounds=1)
    record(seen_dsnr=quality["seen_dsnr"], unseen_dsnr=quality["unseen_dsnr"],
           seen_whole_dsnr=quality["seen_whole_dsnr"],
           unseen_whole_dsnr=quality["unseen_whole_dsnr"],
           seen_spread_db=quality["seen_dsnr_spread"], edge_error_db=error_db,
           latency_ms=bwe.latency_ms, rt_factor=timing.rt_factor, p99_ms=timing.p99_ms)
