"""The template fit of the skirt boost (rtbwe/skirt_shape.py): a filter's skirt is found by
its shape and boosted deeper than the trend rule does; everything the trend rule leaves
alone is left alone; the card setting is checked."""
import numpy as np
import pytest
import soxr
from scipy import signal

from helpers import random_tiny, stream_in_random_blocks

from rtbwe import BandwidthExtender
from rtbwe.bandwidth import detect_bandwidth_hz
from rtbwe.card_lock import skirt_model
from rtbwe.conditioning import full_bin_power
from rtbwe.filters import lowpass, zero_phase_response_db
from rtbwe.skirt import _grid, skirt_gain
from rtbwe.skirt_shape import (FIT_FROM_HZ, MAX_FIT_BOOST_DB, MAX_FIT_RMS_DB, TEMPLATE_FILTERS,
                               TEMPLATE_FIT, TemplateFit, fit_skirt)

SR, WINDOW = 48000, 1024


def _music_like_noise(seconds: float, seed: int) -> np.ndarray:
    """White noise tilted to about -6 dB per octave above 500 Hz (samples,) float32."""
    rng = np.random.default_rng(seed)
    b, a = signal.butter(1, 500, fs=SR)
    return (0.3 * signal.lfilter(b, a, rng.standard_normal(int(seconds * SR)))).astype(
        np.float32)


def _long_term_power(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::512]
    return full_bin_power(frames.astype(np.float64)).mean(axis=0, keepdims=True)


def _boosted(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """x with a zero-phase per-bin gain (gain minus 1 on the window's bins) over the whole
    signal: what the lock's FIR does window by window, without its smoothing."""
    spectrum = np.fft.rfft(x)
    at = np.fft.rfftfreq(len(x), 1 / SR)
    factor = 1.0 + np.interp(at, np.fft.rfftfreq(WINDOW, 1 / SR), gain)
    return np.fft.irfft(spectrum * factor, len(x))


def _snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    middle = slice(SR // 4, -SR // 4)
    return float(10 * np.log10(np.sum(ref[middle] ** 2) / np.sum((ref - y)[middle] ** 2)))


def test_the_fit_names_the_filter_and_its_cutoff():
    """A skirt that is a zero-phase Butterworth 6's at 8 kHz under a flat passband is fitted
    as that filter, at its cutoff to 2 % (the trend, fitted up to 0.9 x the detected edge,
    takes in the start of the knee), close enough to be taken."""
    freqs_hz, log_f = _grid(SR, WINDOW)
    level_db = np.maximum(zero_phase_response_db(SR, 8000.0, "butter", 6, freqs_hz), -120.0)
    edge_hz = float(detect_bandwidth_hz(10 ** (level_db[None] / 10), SR, WINDOW)[0])
    k, cutoff_hz, rms_db = fit_skirt(level_db, freqs_hz, log_f, edge_hz)
    assert TEMPLATE_FILTERS[k] == ("butter", 6)
    assert abs(cutoff_hz / 8000.0 - 1) < 0.02 and rms_db < MAX_FIT_RMS_DB


@pytest.mark.parametrize("family, cutoff_hz", [("butter", 8000), ("cheby1", 8000),
                                                ("butter", 11000), ("bessel", 7000)])
def test_a_filters_skirt_comes_back_closer_than_by_the_trend_rule(family, cutoff_hz):
    """On music-like noise through a gentle filter the fit boosts at least as much as the
    trend rule everywhere, at most MAX_FIT_BOOST_DB, never more than the filter took away
    (plus the 3 % cutoff shift's margin, it is less), and restores the clip closer."""
    x = _music_like_noise(6.0, 3)
    y = lowpass(x, SR, cutoff_hz, family, 6)
    power = _long_term_power(y)
    edge_hz = detect_bandwidth_hz(power, SR, WINDOW)
    trend = skirt_gain(power, edge_hz, SR, WINDOW)[0]
    fitted = TemplateFit().gain(power, edge_hz, SR, WINDOW)[0]
    assert trend.any() and np.all(fitted >= trend - 1e-12)
    # a window the cutoff scaler runs keeps the trend rule's boost (FIT_SCALED_WINDOWS)
    np.testing.assert_array_equal(
        TemplateFit().gain(power, edge_hz, SR, WINDOW, scaled=np.array([True]))[0], trend)
    assert 20 * np.log10(1 + fitted.max()) <= MAX_FIT_BOOST_DB + 1e-9
    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)
    boosted = fitted > trend
    assert boosted.sum() >= 5
    took_db = -zero_phase_response_db(SR, cutoff_hz, family, 6, freqs_hz[boosted])
    assert np.all(20 * np.log10(1 + fitted[boosted]) < took_db + 1.0)
    assert _snr_db(x, _boosted(y, fitted)) > _snr_db(x, _boosted(y, trend)) + 0.5


def test_what_the_trend_rule_leaves_alone_the_fit_leaves_alone():
    """Resampler cliffs, full band, unknown bandwidths and any filter below FIT_FROM_HZ get
    exactly the trend rule's gain (none, or its own)."""
    x = _music_like_noise(6.0, 5)
    fit = TemplateFit()
    for via_hz in (8000, 16000, 22050):
        cliff = soxr.resample(soxr.resample(x, SR, via_hz), via_hz, SR).astype(np.float32)
        power = _long_term_power(cliff)
        assert not fit.gain(power, detect_bandwidth_hz(power, SR, WINDOW), SR, WINDOW).any()
    power = _long_term_power(x)
    for edge in (SR / 2, np.nan):
        assert not fit.gain(power, np.array([edge]), SR, WINDOW).any()
    low = lowpass(x, SR, 4000, "butter", 6)
    power = _long_term_power(low)
    edge_hz = detect_bandwidth_hz(power, SR, WINDOW)
    assert edge_hz[0] < FIT_FROM_HZ
    trend = skirt_gain(power, edge_hz, SR, WINDOW)
    assert trend.any()
    np.testing.assert_array_equal(fit.gain(power, edge_hz, SR, WINDOW), trend)


def test_a_card_names_the_fit_and_streams_as_it_runs_offline():
    """The card setting is checked; through the processor the fit changes the output of a
    gentle 8 kHz filter's input against the trend rule, and streaming equals offline."""
    assert skirt_model(TEMPLATE_FIT) == TEMPLATE_FIT
    assert skirt_model("template-fitt") is None and skirt_model(3) is None
    ref = np.stack([_music_like_noise(3.0, 8), _music_like_noise(3.0, 9)])
    x = lowpass(ref, SR, 8000, "butter", 6).astype(np.float32)
    outputs = {}
    for estimate in (None, TEMPLATE_FIT):
        bwe = BandwidthExtender(random_tiny(6), sample_rate=SR, num_threads=1)
        bwe._band_lock = {**bwe._band_lock, "skirt_eq": True, "skirt_model": estimate}
        outputs[estimate] = bwe.process(x, SR)
    assert _snr_db(ref[0], outputs[TEMPLATE_FIT][0]) > _snr_db(ref[0], outputs[None][0]) + 0.3
    bwe.reset()
    lag = bwe.latency_samples
    streamed = stream_in_random_blocks(bwe, np.pad(x, ((0, 0), (0, lag))), SR)[:, lag:]
    np.testing.assert_allclose(streamed, outputs[TEMPLATE_FIT], atol=1e-5)


def test_the_default_fits_an_unscaled_skirt_and_leaves_scaled_windows_to_the_trend_rule():
    """The shipped default (default-template-fit) against the eighteenth session's default
    (default-scaled-above-3k, the trend rule alone): a Butterworth 6 at 11 kHz (beyond the
    cutoff scaler's reach) comes back closer; at 6 kHz, where the scaler runs every window
    once the bandwidth is known, the output is the same to the bit."""
    ref = _music_like_noise(4.0, 11)
    tail = slice(2 * SR, None)
    outputs = {}
    for cutoff_hz in (11000, 6000):
        x = lowpass(ref, SR, cutoff_hz, "butter", 6).astype(np.float32)
        for card in ("default", "default-scaled-above-3k"):
            outputs[cutoff_hz, card] = BandwidthExtender(card, num_threads=1).process(x, SR)
    fitted, trend = outputs[11000, "default"], outputs[11000, "default-scaled-above-3k"]
    assert _snr_db(ref[tail], fitted[tail]) > _snr_db(ref[tail], trend[tail]) + 0.3
    np.testing.assert_array_equal(outputs[6000, "default"],
                                  outputs[6000, "default-scaled-above-3k"])
