"""Passband lock: below keep_below_hz the output is the input, above it the network's."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rtbwe import models, passband
from rtbwe.processor import BandwidthExtender
from rtbwe.weights import load_model, save_model

RATE = 48000


class Gain(nn.Module):
    """A stand-in network that changes every band: (batch, 1, n) -> 1.25 x input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.25 * x


def _tone(freq_hz: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _gain_db(out: np.ndarray, ref: np.ndarray) -> float:
    mid = slice(len(ref) // 4, 3 * len(ref) // 4)
    return float(10 * np.log10(np.sum(out[mid] ** 2) / np.sum(ref[mid] ** 2)))


@pytest.mark.parametrize("backend", ["eager", "torchscript"])
def test_lock_keeps_the_passband_and_passes_the_high_band(backend):
    bwe = BandwidthExtender(Gain(), num_threads=1, backend=backend, keep_below_hz=4500)
    plain = BandwidthExtender(Gain(), num_threads=1, backend=backend, passband="free")
    for freq_hz in (200.0, 1000.0, 3000.0, 4000.0):
        x = _tone(freq_hz)
        err = bwe.process(x, RATE) - x
        mid = slice(len(x) // 4, 3 * len(x) // 4)
        # untouched to within the FIR's stopband, where the plain network changes the level
        assert 10 * np.log10(np.sum(err[mid] ** 2) / np.sum(x[mid] ** 2)) < -60, freq_hz
        assert _gain_db(plain.process(x, RATE), x) == pytest.approx(1.94, abs=0.01)
    for freq_hz in (5500.0, 8000.0, 15000.0):
        x = _tone(freq_hz)
        assert _gain_db(bwe.process(x, RATE), x) == pytest.approx(1.94, abs=0.05), freq_hz


def test_lock_streams_exactly_like_offline():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 9000))).astype(np.float32)
    bwe = BandwidthExtender(Gain(), num_threads=1, keep_below_hz=3000)
    offline = bwe.process(x, RATE)
    blocks = [bwe.process(x[:, i:i + 700], RATE, reset=False) for i in range(0, 9000, 700)]
    blocks.append(bwe.process(np.zeros((2, bwe.latency_samples), np.float32), RATE,
                              reset=False))
    streamed = np.concatenate(blocks, axis=1)[:, bwe.latency_samples:]
    assert np.allclose(streamed, offline, atol=1e-5)
    assert "keep_below_hz=3000" in repr(bwe)


def test_arunet_with_a_built_in_lock_matches_the_wrapper_and_round_trips(tmp_path):
    torch.manual_seed(0)
    plain = models.build("tiny").eval()
    locked = models.build("tiny", keep_below_hz=4000.0).eval()
    locked.load_state_dict(plain.state_dict())  # the lock adds no weights
    assert sorted(locked.state_dict()) == sorted(plain.state_dict())
    x = 0.1 * torch.randn(2, 1, 2048)
    wrapped = passband.PassbandLock(plain, RATE, 4000.0)
    with torch.inference_mode():
        assert torch.allclose(locked(x), wrapped(x), atol=1e-6)
        assert not torch.allclose(locked(x), plain(x), atol=1e-4)
    class_name, kwargs = models.build_kwargs("tiny", keep_below_hz=4000.0)
    card = save_model(locked, tmp_path / "locked",
                      {"model_class": class_name, "model_kwargs": kwargs, "sample_rate": RATE})
    loaded = load_model(card).eval()
    with torch.inference_mode():
        assert torch.allclose(loaded(x), locked(x), atol=1e-6)


def test_bad_keep_below_hz_is_a_clear_error():
    with pytest.raises(ValueError, match="keep_below_hz=30000.0 must be between 0 and the "
                                         "Nyquist"):
        BandwidthExtender(Gain(), num_threads=1, keep_below_hz=30000)
    with pytest.raises(ValueError, match="taps must be odd"):
        passband.highpass_taps(RATE, 4000.0, taps=256)
    with pytest.raises(ValueError, match="global_residual"):
        models.build("tiny", global_residual=False, keep_below_hz=4000.0)


def test_lock_keeps_the_card_of_a_shipped_model():
    model = load_model("default")
    locked = passband.PassbandLock(model, RATE, 4500.0)
    assert locked.card["sample_rate"] == RATE and locked.card["keep_below_hz"] == 4500.0
    assert "keep_below_hz" not in model.card


class _Counting(nn.Module):
    """1.25 x input, counting the windows it is called on."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        return 1.25 * x


def _white_and_lowpassed(seconds: float) -> np.ndarray:
    """(2, n): white noise (full band) and the same low-passed at 6 kHz."""
    from rtbwe import filters

    white = 0.1 * np.random.default_rng(3).standard_normal(int(seconds * RATE))
    return np.stack([white, filters.lowpass(white, RATE, 6000.0)]).astype(np.float32)


@pytest.mark.parametrize("channels", ["full band", "band-limited", "both"])
def test_full_band_hops_skip_the_network_with_the_same_output(channels):
    """The detected lock returns full-band windows (and all windows before the bandwidth is
    known) as they came in, so a hop with no other window skips the network: the output is
    bit for bit that of running it, offline and streaming."""
    audio = _white_and_lowpassed(3.0)
    audio = {"full band": audio[:1], "band-limited": audio[1:], "both": audio}[channels]
    outputs, counted = {}, {}
    for skip in (True, False):
        net = _Counting()
        bwe = BandwidthExtender(net, sample_rate=RATE, backend="eager", skip_full_band=skip)
        net.windows = 0  # not the engine's warm-up calls
        offline = bwe.process(audio, RATE)
        stream = np.concatenate([bwe.process(audio[:, i:i + 700], RATE, reset=False)
                                 for i in range(0, audio.shape[1], 700)], axis=1)
        outputs[skip], counted[skip] = (offline, stream), (net.windows, bwe.stats)
    np.testing.assert_array_equal(outputs[True][0], outputs[False][0])
    np.testing.assert_array_equal(outputs[True][1], outputs[False][1])
    latency = BandwidthExtender(nn.Identity(), sample_rate=RATE).latency_samples
    np.testing.assert_allclose(outputs[True][1][:, latency:], outputs[True][0][:, :-latency],
                               atol=1e-5)
    (skipped_calls, skipped_stats), (all_calls, all_stats) = counted[True], counted[False]
    assert all_stats.passed_windows == 0 and skipped_stats.passed_windows > 0
    assert skipped_calls + skipped_stats.passed_windows == all_calls
    if channels == "full band":  # the network never runs
        assert skipped_calls == 0 and skipped_stats.batches == 0
        np.testing.assert_allclose(outputs[True][0], audio, atol=1e-6)  # overlap-add rounding
    else:  # it runs once the band limit is known (0.5 s), on both channels' windows
        assert skipped_calls > 0.6 * all_calls
        assert not np.array_equal(outputs[True][0][-1], audio[-1])


def test_a_gain_table_ending_in_zeros_returns_those_windows_and_skips_the_network():
    """Cutoffs in the table's top buckets of gain 0 (a calibrated card adds no band above
    17 kHz) pass like full-band ones: the window comes back as it went in, and a hop of
    only such windows skips the network, with the same output as running it."""
    lock = passband.DetectedBandLock(RATE, 1024, gain=[[5000.0, 1.0], [1e9, 0.0]])
    assert lock.extend_below_hz == 5000.0
    assert passband.DetectedBandLock(RATE, 1024).extend_below_hz == RATE / 2
    assert passband.DetectedBandLock(RATE, 1024, gain=0.0).extend_below_hz == 0.0
    assert passband.DetectedBandLock(
        RATE, 1024, gain=[[4500.0, 0.6], [17000.0, 0.2], [1e9, 0.0]]).extend_below_hz == 17000.0
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 2, 1024)).astype(np.float32)
    assert lock.passes_all(2, np.array([5000.0, 9000.0])) and not lock.passes_all(
        2, np.array([4999.0, 9000.0]))
    out = y.copy()
    lock.apply(x, out, 2, np.array([5000.0, 4000.0]))
    np.testing.assert_array_equal(out[0], x[0])
    assert not np.allclose(out[1], x[1])

    audio = _white_and_lowpassed(3.0)[1:]  # detected at about 6 kHz: in the zero bucket
    outputs, calls = {}, {}
    for skip in (True, False):
        net = _Counting()
        bwe = BandwidthExtender(net, sample_rate=RATE, backend="eager")
        bwe._band_lock = passband.DetectedBandLock(RATE, bwe.window_samples,
                                                   gain=[[5000.0, 1.0], [1e9, 0.0]],
                                                   skip_network=skip)
        net.windows = 0
        outputs[skip] = bwe.process(audio, RATE)
        calls[skip] = net.windows
    np.testing.assert_array_equal(outputs[True], outputs[False])
    np.testing.assert_allclose(outputs[True], audio, atol=1e-6)  # overlap-add rounding
    assert calls[True] == 0 < calls[False]
