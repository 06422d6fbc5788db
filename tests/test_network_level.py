"""A quiet or loud input is extended as well as one at the training level
(rtbwe.streaming.network_gains).

The networks were trained on music at -16 to -30 dBFS RMS. Before the network saw its input
moved into that range, the default's gain on a Butterworth 8 kHz validation clip fell from
+3.4 dB at its own level to -2.3 dB at 60 dB down (docs/training.md, twenty-third session):
a quiet recording came out worse than it went in.
"""
from importlib.resources import files

import numpy as np
import pytest
import soundfile as sf

from helpers import stream_in_random_blocks
from rtbwe import BandwidthExtender, filters, metrics, streaming

SR = 48000


def _clip() -> tuple[np.ndarray, np.ndarray]:
    """4 s of the bundled demo clip (piano and guitar, mono, peak about 0.7), Butterworth 6
    low-passed at 6 kHz -> (reference, input)."""
    audio, rate = sf.read(str(files("rtbwe") / "data" / "demo_clip.flac"), dtype="float32")
    assert rate == SR
    reference = (audio if audio.ndim == 1 else audio.mean(axis=1))[:4 * SR]
    return reference, filters.apply(reference, SR, 6000.0, filters.FilterSpec("butter", 6))


def _gain_db(bwe, reference, degraded, scale: float) -> float:
    bwe.reset()
    out = bwe.process((degraded * scale).astype(np.float32), SR)
    inner = slice(SR, 4 * SR)  # after the detector's first second
    return (metrics.snr_db(reference[inner] * scale, out[inner])
            - metrics.snr_db(reference[inner] * scale, degraded[inner] * scale))


def test_network_gains_move_the_long_term_level_into_the_training_range():
    rng = np.random.default_rng(0)
    window = 1024
    frames = rng.standard_normal((400, window)) * np.hanning(window + 1)[:-1]
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)[None]  # RMS 1
    low_db, high_db = streaming.NETWORK_LEVEL_DBFS
    for level_db, expected_db in ((low_db - 15, 15.0), (high_db + 10, -10.0)):
        gains = streaming.network_gains(power * 10 ** (level_db / 10), window)
        assert 20 * np.log10(gains[0]) == pytest.approx(expected_db, abs=0.3)
    middle_db = (low_db + high_db) / 2
    assert streaming.network_gains(power * 10 ** (middle_db / 10), window) is None  # untouched
    silent = streaming.network_gains(np.zeros((2, window // 2 + 1)), window)
    assert np.allclose(silent, 10 ** (streaming.MAX_NETWORK_GAIN_DB / 20))


def test_the_trackers_long_term_spectrum_reads_the_level_the_gains_assume():
    """network_gains reads an RMS from the tracker's long-term power: white noise at -20 dBFS
    RMS reads -20 dBFS there (so the range is in dBFS RMS, as documented)."""
    from rtbwe.tracker import SpectrumTracker

    window, hop = 1024, 768
    tracker = SpectrumTracker(1, SR, window, hop, 48, context_samples=window - hop)
    x = (0.1 * np.random.default_rng(0).standard_normal(4 * SR)).astype(np.float32)
    n = (len(x) - window) // hop
    frames = np.stack([x[i * hop:i * hop + window] for i in range(n)])
    tracker.update(frames, n, np.zeros((n, 48), np.float32), np.zeros(n),
                   tuple(np.zeros(n) for _ in range(4)))
    mean_square = tracker.long_term_power(n)[-1].mean() / (0.375 * window)
    assert 10 * np.log10(mean_square) == pytest.approx(-20.0, abs=0.2)


@pytest.fixture(scope="module")
def default_bwe():
    return BandwidthExtender("default", num_threads=1)


def test_a_quiet_or_loud_input_gains_as_much_as_one_at_the_training_level(default_bwe):
    """The clip (-16.7 dBFS RMS) at its own level, 40 and 60 dB down and 12 and 18 dB up:
    measured +3.74 / +3.83 / +3.83 / +3.72 / +3.72 dB; without the level range +3.74 /
    -3.58 / -4.77 / +2.33 / +2.49. Inputs beyond the range reach the network at its edge,
    so the two quiet ones come out the same, and so do the two loud ones."""
    reference, degraded = _clip()
    own = _gain_db(default_bwe, reference, degraded, 1.0)
    assert own > 1.0
    moved = {shift_db: _gain_db(default_bwe, reference, degraded, 10 ** (shift_db / 20))
             for shift_db in (-40.0, -60.0, 12.0, 18.0)}
    assert min(moved.values()) > own - 0.3, (own, moved)
    assert moved[-40.0] == pytest.approx(moved[-60.0], abs=0.01)
    assert moved[12.0] == pytest.approx(moved[18.0], abs=0.01)


def test_a_quiet_stream_equals_the_quiet_offline_output(default_bwe):
    _, degraded = _clip()
    quiet = (degraded[:2 * SR] * 1e-3).astype(np.float32)
    default_bwe.reset()
    offline = default_bwe.process(quiet, SR)
    default_bwe.reset()
    streamed = stream_in_random_blocks(default_bwe, quiet, SR)
    latency = default_bwe.latency_samples
    np.testing.assert_allclose(streamed[latency:], offline[:-latency], atol=1e-9)


def test_each_channel_gets_its_own_gain(default_bwe):
    """A stereo input with one channel 50 dB under the other: each channel comes out as it
    does alone (the gain follows each channel's own long-term level)."""
    _, degraded = _clip()
    loud, quiet = degraded[:2 * SR], (degraded[:2 * SR] * 10 ** (-50 / 20)).astype(np.float32)
    default_bwe.reset()
    both = default_bwe.process(np.stack([loud, quiet]), SR)
    for channel, alone in enumerate((loud, quiet)):
        default_bwe.reset()
        np.testing.assert_allclose(both[channel], default_bwe.process(alone, SR),
                                   atol=1e-6 * np.abs(alone).max())
