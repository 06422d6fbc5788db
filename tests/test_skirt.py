"""The skirt boost (rtbwe/skirt.py): a gentle filter's attenuated band comes back, a cliff
(resampler, codec) gets nothing, and streaming still equals offline."""
import numpy as np
import pytest
import soxr
from scipy import signal

from helpers import random_tiny, stream_in_random_blocks
from torch import nn

from rtbwe import BandwidthExtender
from rtbwe.bandwidth import detect_bandwidth_hz
from rtbwe.card_lock import lock_settings, skirt_eq
from rtbwe.filters import lowpass, zero_phase_response_db
from rtbwe.skirt import MAX_BOOST_DB, skirt_gain

SR = 48000
WINDOW = 1024


def _music_like_noise(seconds: float, seed: int) -> np.ndarray:
    """White noise tilted to about -6 dB per octave above 500 Hz (samples,) float32."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * SR))
    b, a = signal.butter(1, 500, fs=SR)
    return (0.3 * signal.lfilter(b, a, white) / 0.05).astype(np.float32) * 0.05


def _long_term_power(x: np.ndarray) -> np.ndarray:
    """(1, bins) float64 mean Hann-windowed bin powers of x, as the tracker keeps them."""
    from rtbwe.conditioning import full_bin_power

    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::512]
    return full_bin_power(frames.astype(np.float64)).mean(axis=0, keepdims=True)


def _snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - y) ** 2)))


def test_skirt_gain_rises_just_above_a_gentle_cutoff_only():
    x = _music_like_noise(6.0, 1)
    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)
    gentle = lowpass(x, SR, 6000, "butter", 6)
    power = _long_term_power(gentle)
    edge_hz = detect_bandwidth_hz(power, SR, WINDOW)
    assert 5700 < edge_hz[0] < 6300
    gain = skirt_gain(power, edge_hz, SR, WINDOW)[0]
    assert np.all(gain[freqs_hz < edge_hz[0]] == 0)
    skirt = (freqs_hz > 6600) & (freqs_hz < 7400)
    assert gain[skirt].min() > 0.2 and np.all(np.diff(gain[skirt]) > 0)  # rising with depth
    assert gain.max() <= 10 ** (MAX_BOOST_DB / 20) - 1 + 1e-9
    # never more than the filter took away: the boost stays short of the truth
    boosted = gain > 0
    attenuation_db = -zero_phase_response_db(SR, 6000, "butter", 6, freqs_hz[boosted])
    assert np.all(20 * np.log10(1 + gain[boosted]) < attenuation_db)
    assert np.all(gain[freqs_hz > 12000] == 0)  # the floor is left alone
    # a resampler's cliff gets nothing: its transition band is narrower than MIN_WIDTH (at
    # most 4 % of the bandwidth measured here), and what is left there is mostly gone
    for via_hz in (8000, 16000, 22050):
        cliff = soxr.resample(soxr.resample(x, SR, via_hz), via_hz, SR).astype(np.float32)
        power = _long_term_power(cliff)
        assert not skirt_gain(power, detect_bandwidth_hz(power, SR, WINDOW), SR, WINDOW).any()
    power = _long_term_power(x)
    assert not skirt_gain(power, np.array([SR / 2]), SR, WINDOW).any()
    assert not skirt_gain(power, np.array([np.nan]), SR, WINDOW).any()


def test_a_shallow_roll_off_is_not_boosted():
    """A codec's roll-off (GSM's lies 9-14 dB below the trend at 1.3 x the bandwidth on
    validation) is wide enough for the cliff test but not deep enough for a filter's skirt:
    BOOST_STEEP_DB leaves it alone; the same edge as a steep skirt is boosted."""
    from rtbwe import skirt

    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)

    def power(db_per_octave, floor_at=None):
        octaves = np.log2(np.maximum(freqs_hz, 1.0) / 4000.0)
        gap_db = np.clip(db_per_octave * octaves, 0.0, 90.0)
        if floor_at is not None:  # a codec's low-pass: shallow, then a cliff to the floor
            gap_db[freqs_hz >= floor_at * 4000.0] = 90.0
        return 10 ** (-gap_db / 10)[None]

    edge = np.array([4000.0])
    shallow, steep = power(24, floor_at=1.5), power(72)
    level = skirt.smooth_db(shallow)[0]
    assert skirt.has_skirt(level, 4000.0, SR, WINDOW)  # a skirt to the cliff test ...
    assert not skirt.has_skirt(level, 4000.0, SR, WINDOW, steep_db=skirt.BOOST_STEEP_DB)
    assert not skirt_gain(shallow, edge, SR, WINDOW).any()  # ... but not boosted
    assert skirt_gain(steep, edge, SR, WINDOW).max() > 0.5


def skirt_or_cliff_power(edge_hz: float, cliff_at: float | None = None) -> np.ndarray:
    """(1, bins) long-term powers of a skirt falling 72 dB per octave above ``edge_hz`` to a
    floor 90 dB down; with ``cliff_at``, cut to 120 dB down from ``cliff_at`` x ``edge_hz``
    (a resampler's cliff detected a little under it)."""
    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)
    octaves = np.log2(np.maximum(freqs_hz, 1.0) / edge_hz)
    gap_db = np.clip(72 * octaves, 0.0, 90.0)
    if cliff_at is not None:
        gap_db[freqs_hz >= cliff_at * edge_hz] = 120.0
    return 10 ** (-gap_db / 10)[None]


def test_a_resamplers_cliff_that_passes_the_width_test_is_not_boosted_below_10k():
    """A resampler detected a little under its cliff (a gentle start for 0.16 x the
    bandwidth, then the cliff: wide enough for MIN_WIDTH) is not boosted below
    BOOST_EDGE_BELOW_HZ (10 kHz since the nineteenth session; 5 kHz before), where it falls
    more than BOOST_EDGE_FALL_DB in one step (the boost's FIR would lift the flat passband
    under the edge); a filter's skirt at the same edges is boosted, and so is the cliff's
    shape at 12 kHz (at 11-14 kHz the test took filter skirts)."""
    from rtbwe import skirt

    power = skirt_or_cliff_power
    cliff, filtered = power(3800.0, cliff_at=1.16), power(3800.0)
    level = skirt.smooth_db(cliff)[0]
    assert skirt.has_skirt(level, 3800.0, SR, WINDOW, steep_db=skirt.BOOST_STEEP_DB)
    assert skirt.steepest_fall_db(level, 3800.0, SR, WINDOW,
                                  skirt.EDGE_SPAN) > skirt.BOOST_EDGE_FALL_DB
    assert not skirt_gain(cliff, np.array([3800.0]), SR, WINDOW).any()
    assert skirt_gain(filtered, np.array([3800.0]), SR, WINDOW).max() > 0.5
    assert not skirt_gain(power(8000.0, cliff_at=1.16), np.array([8000.0]), SR, WINDOW).any()
    assert skirt_gain(power(8000.0), np.array([8000.0]), SR, WINDOW).max() > 0.5
    assert skirt_gain(power(12000.0, cliff_at=1.16), np.array([12000.0]), SR,
                      WINDOW).max() > 0.5


def test_a_skirt_reaching_its_floor_far_above_the_bandwidth_is_not_boosted():
    """A fall from 4 kHz (60 dB per octave down to 30 dB, then level) that reaches the floor
    only at 2 x the bandwidth, beyond MAX_WIDTH (music falling ahead of a filter's real
    edge, which is further up), is not a filter's skirt; the same fall cut to the floor at
    1.5 x the bandwidth is, and is boosted."""
    from rtbwe import skirt

    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)
    octaves = np.log2(np.maximum(freqs_hz, 1.0) / 4000.0)
    gap_db = np.clip(60.0 * octaves, 0.0, 30.0)
    wide = 10 ** (-np.where(freqs_hz >= 8000.0, 90.0, gap_db) / 10)[None]
    cut = 10 ** (-np.where(freqs_hz >= 6000.0, 90.0, gap_db) / 10)[None]
    edge = np.array([4000.0])
    assert not skirt.has_skirt(skirt.smooth_db(wide)[0], 4000.0, SR, WINDOW)
    assert not skirt_gain(wide, edge, SR, WINDOW).any()
    assert skirt.has_skirt(skirt.smooth_db(cut)[0], 4000.0, SR, WINDOW)
    assert skirt_gain(cut, edge, SR, WINDOW).max() > 0.5


def _identity_extender(on: bool) -> BandwidthExtender:
    return BandwidthExtender(nn.Identity(), sample_rate=SR, num_threads=1, skirt_boost=on)


def test_skirt_boost_restores_a_butterworth_skirt():
    """With a network that adds nothing, what the output gains is the boost's alone."""
    ref = _music_like_noise(6.0, 2)
    x = lowpass(ref, SR, 6000, "butter", 6).astype(np.float32)
    tail = slice(2 * SR, None)  # after the detection has settled
    base = _snr_db(ref[tail], x[tail])
    off = _identity_extender(False).process(x, SR)
    on = _identity_extender(True).process(x, SR)
    assert abs(_snr_db(ref[tail], off[tail]) - base) < 0.01
    # +0.50 dB measured: the skirt is a small part of what this bright noise lost up to 24 kHz
    assert _snr_db(ref[tail], on[tail]) - base > 0.3


@pytest.mark.parametrize("how", ["full band", "silence"])
def test_skirt_boost_leaves_full_band_and_silence_exactly_alone(how):
    x = _music_like_noise(3.0, 3) if how == "full band" else np.zeros(3 * SR, np.float32)
    outputs = []
    for on in (False, True):
        bwe = BandwidthExtender(random_tiny(5), sample_rate=SR, num_threads=1)
        bwe._band_lock = {**bwe._band_lock, "skirt_eq": on}
        outputs.append(bwe.process(x, SR))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_streaming_equals_offline_with_the_skirt_boost():
    ref = np.stack([_music_like_noise(3.0, 4), _music_like_noise(3.0, 5)])
    x = lowpass(ref, SR, 7000, "butter", 6).astype(np.float32)
    bwe = BandwidthExtender(random_tiny(6), sample_rate=SR, num_threads=1)
    bwe._band_lock = {**bwe._band_lock, "skirt_eq": True}
    offline = bwe.process(x, SR)
    assert not np.array_equal(offline, BandwidthExtender(random_tiny(6), sample_rate=SR,
                                                         num_threads=1).process(x, SR))
    bwe.reset()
    lag = bwe.latency_samples
    streamed = stream_in_random_blocks(bwe, np.pad(x, ((0, 0), (0, lag))), SR)[:, lag:]
    np.testing.assert_allclose(streamed, offline, atol=1e-5)


def test_the_default_card_boosts_and_the_caller_can_turn_it_off():
    assert BandwidthExtender("default", num_threads=1).skirt_eq is True
    assert BandwidthExtender("default", num_threads=1, skirt_boost=False).skirt_eq is False
    assert BandwidthExtender("arunet-small-half-wide", num_threads=1).skirt_eq is False  # card
    assert BandwidthExtender(nn.Identity(), sample_rate=SR).skirt_eq is False  # no card


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (None, False),
                                             (1, False), ("true", False), ([1], False)])
def test_card_skirt_eq_is_checked(value, expected):
    assert skirt_eq(value) is expected
    assert lock_settings({"skirt_eq": value})["skirt_eq"] is expected
    assert lock_settings("not a card")["skirt_eq"] is False


def test_no_skirt_boost_flag_reaches_every_way_of_building_an_extender(tmp_path, capsys):
    """`rtbwe process --no-skirt-boost` writes the boost-free output and says nothing of a
    boost; `rtbwe live`'s builder and the Ray workers' options carry the flag too."""
    import argparse

    import soundfile as sf

    from rtbwe import batch, cli_live, cli_process
    from rtbwe.cli import main

    # 4 kHz: below the default's cutoff scaling (from 5 kHz), whose windows get no boost
    x = lowpass(_music_like_noise(3.0, 7), SR, 4000, "butter", 6).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, SR, subtype="FLOAT")
    outputs = {}
    for flag in ([], ["--no-skirt-boost"]):
        out = tmp_path / f"out{len(flag)}.wav"
        assert main(["process", str(tmp_path / "in.wav"), str(out), *flag]) == 0
        outputs[bool(flag)] = (sf.read(out, dtype="float32")[0], capsys.readouterr().out)
    assert "boosted back up to" in outputs[False][1]
    assert "boosted" not in outputs[True][1]
    reference = BandwidthExtender("default", num_threads=1, skirt_boost=False).process(x, SR)
    np.testing.assert_array_equal(outputs[True][0], reference)
    assert not np.array_equal(outputs[False][0], outputs[True][0])
    assert cli_live.build_processor("default", "cpu", skirt_boost=False).skirt_eq is False
    assert cli_live.build_processor("default", "cpu").skirt_eq is True
    assert {"no_skirt_boost", "low_latency"} <= set(batch.EXTENDER_OPTIONS)
    options = argparse.Namespace(model="default", device="cpu", backend="auto", threads=1,
                                 keep_below_hz=None, window_ms=None, hop_ms=None,
                                 low_latency=True, no_skirt_boost=True)
    bwe = cli_process.load_extender(options)  # what a Ray worker builds from the options
    assert bwe.skirt_eq is False and bwe.latency_ms < 10


def test_no_boost_is_reported_where_the_lock_passes_the_input_through():
    """An 18 kHz Butterworth input lies above the default card's extension limit (17 kHz):
    the lock passes it through, boost included, so stats must not report a boost (they did,
    and `rtbwe process` printed "boosted back up to 19.8 kHz" beside "passed through"). The
    same noise at 4 kHz is boosted and says so (at 5 kHz and up the default scales gentle
    filters' windows instead, test_rescale)."""
    x = _music_like_noise(4.0, seed=3)
    for cutoff_hz, boosted in ((18000.0, False), (4000.0, True)):
        y = lowpass(x, SR, cutoff_hz, "butter", 6).astype(np.float32)
        bwe = BandwidthExtender(num_threads=1)
        out = bwe.process(y[None], SR)[0]
        assert (bwe.stats.skirt_boost_hz is not None) is boosted, (cutoff_hz, bwe.stats)
        if not boosted:  # the input, up to the overlap-add's rounding
            assert _snr_db(y, out) > 100
        else:
            assert bwe.stats.skirt_boost_hz > cutoff_hz


def test_a_noise_floor_above_the_skirts_floor_is_not_boosted():
    """Hiss added after a Butterworth 6 at 6 kHz, 40 dB under the passband (a tape's, or the
    click of a stream that starts mid-signal held in the long-term spectrum): the fall never
    reaches FLOOR_GAP_DB under the trend, and what lies above is noise, not an attenuated
    band. No boost (sixteenth session: it had been boosted by up to MAX_BOOST_DB from 6 kHz
    to Nyquist). The same filter with hiss 60 dB under is boosted."""
    x = _music_like_noise(6.0, 4)
    filtered = lowpass(x, SR, 6000, "butter", 6)
    rng = np.random.default_rng(5)
    hiss = rng.standard_normal(len(x))
    freqs_hz = np.fft.rfftfreq(WINDOW, 1 / SR)
    clean = _long_term_power(filtered)
    band = clean[0, (freqs_hz > 3600) & (freqs_hz < 5400)].mean()
    white = _long_term_power(hiss)[0, 1:].mean()
    boosts = {}
    for under_db in (40, 60):
        noisy = filtered + hiss * np.sqrt(band / white * 10 ** (-under_db / 10))
        power = _long_term_power(noisy.astype(np.float32))
        edge = detect_bandwidth_hz(power, SR, WINDOW)
        assert 5500 < edge[0] < 6500
        boosts[under_db] = skirt_gain(power, edge, SR, WINDOW)[0]
    assert not boosts[40].any()
    assert boosts[60].max() > 0.5 and not boosts[60][freqs_hz > 12000].any()


def test_the_boost_reaches_deeper_than_the_skirts_floor(monkeypatch):
    """The width tests end a skirt at FLOOR_GAP_DB (40 dB under the trend); the boost goes on
    to BOOST_FLOOR_GAP_DB: the bins of a Butterworth 6 at 6 kHz that lie more than 40 dB
    under the trend (above 8.5 kHz) still hold the true signal, and get MAX_BOOST_DB, never
    beyond what the filter took. With the boost's floor at 40 dB they got nothing."""
    from rtbwe import skirt

    x = _music_like_noise(6.0, 1)
    freqs_hz, log_f = skirt._grid(SR, WINDOW)
    power = _long_term_power(lowpass(x, SR, 6000, "butter", 6))
    edge_hz = detect_bandwidth_hz(power, SR, WINDOW)
    first, gap_db = skirt._skirt_gap(skirt.smooth_db(power)[0], freqs_hz, log_f, edge_hz[0],
                                     span_floor_db=skirt.BOOST_FLOOR_GAP_DB)
    deep = first + np.flatnonzero(gap_db > skirt.FLOOR_GAP_DB)
    assert len(deep) >= 3 and freqs_hz[deep].min() > 8500, freqs_hz[deep]
    gain_db = 20 * np.log10(1 + skirt_gain(power, edge_hz, SR, WINDOW)[0][deep])
    attenuation_db = -zero_phase_response_db(SR, 6000, "butter", 6, freqs_hz[deep])
    assert np.all(gain_db > MAX_BOOST_DB - 0.01) and np.all(gain_db < attenuation_db)
    monkeypatch.setattr(skirt, "BOOST_FLOOR_GAP_DB", skirt.FLOOR_GAP_DB)
    assert not skirt_gain(power, edge_hz, SR, WINDOW)[0][deep].any()
