"""Low-latency mode (``--low-latency``): 448 / 224 samples at 48 kHz, under 10 ms, still exact."""
from __future__ import annotations

import numpy as np
import pytest

from rtbwe import cli, cli_live, cli_process, processor

RATE = 48000


@pytest.mark.parametrize("argv, window_ms, hop_ms", [
    (["process", "--low-latency", "a.wav", "b.wav"], 1000 * 448 / RATE, 1000 * 224 / RATE),
    (["bench", "--low-latency"], 1000 * 448 / RATE, 1000 * 224 / RATE),
    (["process", "--low-latency", "--hop-ms", "3", "a.wav", "b.wav"], 1000 * 448 / RATE, 3.0),
    (["process", "a.wav", "b.wav"], None, None),
])
def test_low_latency_flag_sets_the_geometry_and_explicit_options_win(argv, window_ms, hop_ms):
    options = cli_process.model_options(cli.build_parser().parse_args(argv))
    assert options.get("window_ms") == window_ms and options.get("hop_ms") == hop_ms


def test_low_latency_default_model_is_under_10_ms_and_streams_exactly():
    bwe = processor.BandwidthExtender(window_ms=processor.LOW_LATENCY_WINDOW_MS,
                                      hop_ms=processor.LOW_LATENCY_HOP_MS, num_threads=1)
    assert (bwe.window_samples, bwe.hop_samples, bwe.latency_samples) == (448, 224, 447)
    assert bwe.latency_ms < 10.0
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(0)  # band-limited at 6 kHz: full-band input passes unchanged
    noise = sosfilt(butter(8, 6000, fs=RATE, output="sos"), rng.standard_normal((2, 48000)))
    x = (0.1 * noise).astype(np.float32)
    offline = bwe.process(x, RATE)
    assert np.abs(offline - x).max() > 1e-3
    blocks, outs, at = [1, 65, 224, 3000, 37, 44673], [], 0
    for size in blocks:
        outs.append(bwe.process(x[:, at:at + size], RATE, reset=False))
        at += size
    stream = np.concatenate(outs, axis=1)
    np.testing.assert_allclose(stream[:, 447:], offline[:, :-447], atol=1e-5)


def test_live_low_latency_processor():
    bwe = cli_live.build_processor("identity", "cpu", low_latency=True)
    assert bwe.latency_samples == 447 and bwe.engine.num_threads == 1
    assert cli_live.build_processor("identity", "cpu").latency_samples == 1023
