"""Cutoff scaling (rtbwe/rescale.py): the per-window resampler is accurate, the scaled condition
is the tracker's at scale 1, the 6 kHz model scaled restores a Butterworth 4 kHz input better
than the default, cliffs stay with the default's network, streaming equals offline, and a
card's settings are checked as untrusted input."""
import json

import numpy as np
import pytest
import soxr

from helpers import stream_in_random_blocks
from test_skirt import SR, _music_like_noise, _snr_db

from rtbwe import BandwidthExtender, rescale
from rtbwe.bandwidth import smooth_db
from rtbwe.card_lock import cutoff_scaling
from rtbwe.tracker import SpectrumTracker
from rtbwe.filters import lowpass
from rtbwe.skirt import has_skirt
from rtbwe.weights import WEIGHTS_DIR

SCALING = {"model": "arunet-small-cond-6k", "target_hz": 6000.0, "max_length_ratio": 2.0,
           "gain": 1.0}


@pytest.mark.parametrize("n_out", [688, 1360, 2048])
def test_resampling_a_window_keeps_a_band_limited_tone(n_out):
    """A 3 kHz tone resampled to n_out samples (same time span) and back: within 1e-3 of
    itself away from the window's mirrored edges, and at the right phase both ways."""
    window = 1024
    t = np.arange(window)
    x = np.sin(2 * np.pi * 3000 / SR * t + 0.3).astype(np.float32)[None]
    y = rescale.resample_rows(x, n_out)
    centres = (np.arange(n_out) + 0.5) * window / n_out - 0.5
    expected = np.sin(2 * np.pi * 3000 / SR * centres + 0.3)
    assert np.abs(y[0, 48:-48] - expected[48:-48]).max() < 1e-3
    back = rescale.resample_rows(y, window)
    assert np.abs(back[0, 64:-64] - x[0, 64:-64]).max() < 1e-3


def test_resampling_down_removes_what_the_lower_rate_cannot_hold():
    """1024 -> 512 samples halves the rate: a tone at 0.8 x the old Nyquist must not alias
    back in (below -40 dB of its level)."""
    t = np.arange(1024)
    x = np.sin(2 * np.pi * 0.4 * t).astype(np.float32)[None]
    assert np.sqrt(np.mean(rescale.resample_rows(x, 512)[0, 48:-48] ** 2)) < 0.01


def test_scaled_condition_at_scale_one_is_the_trackers_own():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((4, 1024)).astype(np.float32)
    tracker = SpectrumTracker(1, SR, 1024, 768, 40)
    out = np.zeros((4, 40), np.float32)
    tracker.update(frames, 4, out)
    power = tracker.long_term_power(4)
    np.testing.assert_allclose(rescale.scaled_conditions(power, SR, 1024, 1024), out, atol=1e-5)


def test_scaled_length_puts_the_cutoff_at_the_target():
    assert rescale.scaled_length(4000.0, 6000.0, 1024, 2.0) == 688   # 682.7 -> 688
    assert rescale.scaled_length(9000.0, 6000.0, 1024, 2.0) == 1536
    assert rescale.scaled_length(20000.0, 6000.0, 1024, 2.0) == 2048  # capped
    assert rescale.scaled_length(float("nan"), 6000.0, 1024, 2.0) == 0


def _scaled_default() -> BandwidthExtender:
    bwe = BandwidthExtender("default", num_threads=1)
    bwe._band_lock = {**bwe._band_lock, "cutoff_scaling": SCALING}
    return bwe


def test_the_6k_model_scaled_restores_a_butterworth_4k_input_better_than_the_network_alone():
    """Measured here: the default's network alone (`fast`) +0.57 dB, the scaled 6 kHz model
    +2.06 dB (seconds 2-6)."""
    ref = _music_like_noise(6.0, 3)
    x = lowpass(ref, SR, 4000, "butter", 6).astype(np.float32)
    tail = slice(2 * SR, None)
    base = _snr_db(ref[tail], x[tail])
    alone = _snr_db(ref[tail], BandwidthExtender("fast", num_threads=1).process(x, SR)[tail])
    bwe = _scaled_default()
    scaled = _snr_db(ref[tail], bwe.process(x, SR)[tail])
    assert scaled - base > alone - base + 0.5, (scaled - base, alone - base)
    assert bwe.stats.batches > 0


def test_a_resampled_input_stays_with_the_defaults_network():
    """A resampler's cliff is not a skirt: the scaler takes no window, the output is the
    default's to the bit."""
    x = _music_like_noise(4.0, 4)
    cliff = soxr.resample(soxr.resample(x, SR, 16000), 16000, SR).astype(np.float32)
    plain = BandwidthExtender("default", num_threads=1).process(cliff, SR)
    np.testing.assert_array_equal(_scaled_default().process(cliff, SR), plain)


def test_streaming_equals_offline_with_cutoff_scaling():
    ref = _music_like_noise(3.0, 5)
    x = np.stack([lowpass(ref, SR, 5000, "butter", 6),
                  lowpass(ref, SR, 9000, "butter", 6)]).astype(np.float32)
    bwe = _scaled_default()
    offline = bwe.process(x, SR)
    streamed = stream_in_random_blocks(bwe, x, SR, max_block=4000, seed=1)
    lat = bwe.latency_samples
    np.testing.assert_allclose(streamed[:, lat:], offline[:, :-lat], atol=2e-5)


@pytest.mark.parametrize("value", [
    None, 1, "arunet-small-cond-6k", {"model": "x.safetensors", "target_hz": 6000},
    {"model": "arunet-small-cond-6k"}, {"model": "arunet-small-cond-6k", "target_hz": 1e9},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": float("nan")},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_length_ratio": 100},
    {"model": "arunet-small-cond-6k", "target_hz": True},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": [[5000, 1.0], [4000, 1.0]]},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": [[5000, 9.0]]},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": [[float("nan"), 1.0]]},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": [[5000, 1.0, 2.0]]},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": [[5000, 1.0]] * 40},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "gain": "1"},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "min_cutoff_hz": float("nan")},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "min_cutoff_hz": -1.0},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "min_cutoff_hz": 1e9},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "min_cutoff_hz": True},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "min_cutoff_hz": "5000"},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_shelf_drop_db": float("nan")},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_shelf_drop_db": 0.0},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_shelf_drop_db": 1e9},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_shelf_drop_db": True},
    {"model": "arunet-small-cond-6k", "target_hz": 6000, "max_shelf_drop_db": "30"}])
def test_a_malformed_cutoff_scaling_setting_means_none(value):
    assert cutoff_scaling(value) is None


def test_min_cutoff_hz_is_kept_when_valid():
    assert cutoff_scaling({**SCALING, "min_cutoff_hz": 5000}) == {**SCALING,
                                                                   "min_cutoff_hz": 5000.0}
    assert "min_cutoff_hz" not in cutoff_scaling(SCALING)


def test_a_gain_table_sets_the_scaled_band_per_bucket_of_the_cutoff():
    """A card's scaled gain may be a table per bucket of the cutoff, checked like the
    number; the scaler adds each window's band at its bucket's gain (here 0 below 5 kHz,
    so a 4 kHz window comes back as it went in, and 2 x the 1.0 band above)."""
    table = [[5000.0, 0.0], [1e9, 2.0]]
    setting = cutoff_scaling({**SCALING, "gain": table})
    assert setting == {**SCALING, "gain": table}
    scaler = rescale.CutoffScaler(sample_rate=SR, window_samples=1024, **setting)
    assert scaler.bucket_gains(np.array([4000.0, 5000.0, 8000.0])).tolist() == [0.0, 2.0, 2.0]
    one = rescale.CutoffScaler(sample_rate=SR, window_samples=1024, **{**setting, "gain": 1.0})
    rng = np.random.default_rng(0)
    frames = lowpass(rng.standard_normal((2, 1024)), SR, 4000.0, "butter", 6).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * np.hanning(1024), axis=1)) ** 2
    cutoffs, index, lock_gains = np.array([4000.0, 8000.0]), np.arange(2), np.ones(2)
    gained, unit = frames.copy(), frames.copy()
    scaler.run(gained, index, cutoffs, power, lock_gains)
    one.run(unit, index, cutoffs, power, lock_gains)
    np.testing.assert_array_equal(gained[0], frames[0])
    np.testing.assert_allclose(gained[1] - frames[1], 2 * (unit[1] - frames[1]), atol=1e-5)
    assert np.abs(unit[1] - frames[1]).max() > 1e-3


@pytest.mark.parametrize("name", ["default-scaled-6k", "default-scaled-half-6k",
                                  "default-scaled-above-5k", "default-scaled-above-3k",
                                  "default-scaled-learned-skirt"])
def test_the_shipped_scaled_cards_name_a_checked_setting(name):
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert cutoff_scaling(card["cutoff_scaling"]) == SCALING | card["cutoff_scaling"]
    assert BandwidthExtender(name, num_threads=1).cutoff_scaling == card["cutoff_scaling"]


def test_the_half_width_student_restores_a_butterworth_4k_input_as_its_teacher():
    """default-scaled-half-6k runs the 6 kHz network's half-width student. Measured here
    (seconds 2-6): +2.10 dB, the teacher's card +2.06, the network alone (`fast`) +0.57."""
    ref = _music_like_noise(6.0, 3)
    x = lowpass(ref, SR, 4000, "butter", 6).astype(np.float32)
    tail = slice(2 * SR, None)
    base = _snr_db(ref[tail], x[tail])
    gains = {}
    for name in ("fast", "default-scaled-6k", "default-scaled-half-6k"):
        out = BandwidthExtender(name, num_threads=1).process(x, SR)
        gains[name] = _snr_db(ref[tail], out[tail]) - base
    assert gains["default-scaled-half-6k"] > gains["fast"] + 0.5, gains
    assert gains["default-scaled-half-6k"] > gains["default-scaled-6k"] - 0.3, gains


def test_select_takes_skirts_only_at_cutoffs_the_length_cap_reaches():
    """A gentle skirt at 8 kHz is scaled (ratio 1.33), and at 12.5 kHz (within 1.1 x the cap
    of 2 x 6 kHz); at 14 kHz it is not (the cap would leave its edge at 7 kHz in the
    network's domain); a cliff at 8 kHz is not either, nor a skirt at 2.5 kHz (below half
    the target: mostly music dark ahead of the real edge)."""
    scaler = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, target_hz=6000.0,
                                  max_length_ratio=2.0)
    freqs_hz = np.fft.rfftfreq(1024, 1 / SR)

    def power(edge_hz, db_per_octave):
        octaves = np.log2(np.maximum(freqs_hz, 1.0) / edge_hz)
        return 10 ** (-np.clip(db_per_octave * octaves, 0.0, 90.0) / 10)

    rows = np.stack([power(8000, 72), power(14000, 72), power(8000, 1000), power(12500, 72),
                     power(2500, 72), power(3000, 72)])
    cutoffs = np.array([8000.0, 14000.0, 8000.0, 12500.0, 2500.0, 3000.0])
    assert scaler.select(6, cutoffs, rows, 17000.0).tolist() == [True, False, False, True,
                                                                 False, True]
    assert scaler.select(1, cutoffs, rows, 7000.0).tolist() == [False]  # the lock's limit
    # a card's min_cutoff_hz raises the lowest cutoff scaled (default 0.5 x target_hz)
    above_5k = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, target_hz=6000.0,
                                    max_length_ratio=2.0, min_cutoff_hz=5000.0)
    assert above_5k.select(6, cutoffs, rows, 17000.0).tolist() == [True, False, False, True,
                                                                   False, False]
    # a codec's shallow roll-off: 12 dB per octave is about 4.5 dB down at 1.3 x the cutoff,
    # then its cliff to the floor at 1.5 x (a skirt to has_skirt, but not a filter's:
    # STEEP_DB); with no floor at all it is not even a skirt (rtbwe.skirt.MAX_WIDTH)
    assert not has_skirt(smooth_db(power(8000, 12)[None])[0], 8000.0, SR, 1024)
    shallow = np.where(freqs_hz >= 12000.0, 1e-9, power(8000, 12))
    assert has_skirt(smooth_db(shallow[None])[0], 8000.0, SR, 1024)
    assert scaler.select(1, np.array([8000.0]), shallow[None], 17000.0).tolist() == [False]


def test_select_leaves_dark_passbands_and_narrow_skirts_to_the_engine():
    """A skirt at 8 kHz under a passband falling 16 dB per octave (dark music whose own
    spectrum falls into the cutoff) is not scaled, under a flat or 8 dB per octave one it
    is; at 4 kHz a passband falling 24 dB per octave (the octave below the cutoff 24 dB
    under the one beneath it: past DARK_ROLLOFF_DB) is not either, one falling 8 is; a skirt
    10 % wide (a resampler's cliff detected a little below its edge) passes the boost's
    width test (rtbwe.skirt.MIN_WIDTH) but not the scaler's (rescale.MIN_WIDTH)."""
    scaler = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, target_hz=6000.0,
                                  max_length_ratio=2.0)
    freqs_hz = np.fft.rfftfreq(1024, 1 / SR)
    octaves_above_1k = np.log2(np.maximum(freqs_hz, 1000.0) / 1000.0)

    def power(edge_hz, skirt_db_per_octave, passband_db_per_octave):
        octaves = np.log2(np.maximum(freqs_hz, 1.0) / edge_hz)
        skirt_db = np.clip(skirt_db_per_octave * octaves, 0.0, 90.0)
        return 10 ** (-(skirt_db + passband_db_per_octave * octaves_above_1k) / 10)

    cases = [(8000.0, 72, 16, False), (8000.0, 72, 0, True), (8000.0, 72, 8, True),
             (4000.0, 72, 24, False), (4000.0, 72, 8, True), (8000.0, 300, 0, False)]
    rows = np.stack([power(edge, skirt, passband) for edge, skirt, passband, _ in cases])
    cutoffs = np.array([edge for edge, *_ in cases])
    assert scaler.select(len(cases), cutoffs, rows, 17000.0).tolist() == [
        expected for *_, expected in cases]
    narrow = smooth_db(rows[-1:])[0]
    assert has_skirt(narrow, 8000.0, SR, 1024)
    assert not has_skirt(narrow, 8000.0, SR, 1024, min_width=rescale.MIN_WIDTH)


def test_the_scalers_choice_is_made_at_detections_and_held(monkeypatch):
    """The scaler chooses its windows at the tracker's detections (every DETECT_EVERY_FRAMES
    frames) from that detection's spectrum, and the tracker holds the choice in between, as
    it holds the cutoff: one choice per channel per detection, not one per window."""
    from rtbwe.tracker import DETECT_EVERY_FRAMES

    calls = []
    select = rescale.CutoffScaler.select

    def counting(self, rows, cutoffs_hz, power, extend_below_hz):
        calls.append(rows)
        return select(self, rows, cutoffs_hz, power, extend_below_hz)

    monkeypatch.setattr(rescale.CutoffScaler, "select", counting)
    ref = np.stack([_music_like_noise(3.0, 5), _music_like_noise(3.0, 6)])
    x = lowpass(ref, SR, 4000.0, "butter", 6).astype(np.float32)
    bwe = BandwidthExtender("default-scaled-half-6k", num_threads=1)
    y = bwe.process(x, SR)
    windows = x.shape[1] // bwe.hop_samples
    assert 0 < sum(calls) <= 2 * (windows // DETECT_EVERY_FRAMES + 1)
    assert _snr_db(ref[:, SR:], y[:, SR:]) > _snr_db(ref[:, SR:], x[:, SR:])


def test_windows_the_scaler_takes_are_boosted_only_with_keep_boost():
    """Without ``keep_boost`` the scaled network is left to equalise the skirt (no boost on
    its windows), so `stats.skirt_boost_hz` (what `rtbwe process` prints as "boosted back up
    to") is None for an input whose windows it scales; the default keeps the boost there
    (``keep_boost``), says so, and its output differs by the boost."""
    x = lowpass(_music_like_noise(3.0, 7), SR, 6000, "butter", 6).astype(np.float32)
    kept = BandwidthExtender("default", num_threads=1)
    y_kept = kept.process(x, SR)
    assert kept.cutoff_scaling["min_cutoff_hz"] < kept.input_bandwidth_hz
    assert kept.cutoff_scaling["keep_boost"] and kept.stats.skirt_boost_hz > 6000
    plain = BandwidthExtender("default", num_threads=1)
    plain._band_lock = {**plain._band_lock, "cutoff_scaling": {**kept.cutoff_scaling,
                                                               "keep_boost": False}}
    y_plain = plain.process(x, SR)
    assert plain.stats.skirt_boost_hz is None
    unboosted = BandwidthExtender("default", num_threads=1, skirt_boost=False).process(x, SR)
    assert np.abs(y_kept - unboosted).max() > 1e-3
    assert np.abs(y_plain - unboosted).max() < 1e-4  # the same scaled band, no boost
    assert cutoff_scaling({**SCALING, "keep_boost": 1}) is None  # a bool, nothing else


def test_a_codecs_shelf_that_ends_in_a_cliff_is_not_scaled_below_5k():
    """GSM through an 8 kHz rate leaves, above its detected edge, a shelf of images that ends
    in a cliff: with a card's ``max_shelf_drop_db`` the scaler leaves such windows to the
    engine's network below SHELF_BELOW_HZ, while a filter's skirt (72 dB per octave: about
    10 dB per 0.15 x the cutoff past 1.3 x) is still scaled; above SHELF_BELOW_HZ the test
    is not made. Without the setting (the older cards) nothing changes."""
    from rtbwe.skirt import steepest_fall_db

    freqs_hz = np.fft.rfftfreq(1024, 1 / SR)

    def skirt(edge_hz):
        octaves = np.log2(np.maximum(freqs_hz, 1.0) / edge_hz)
        return 10 ** (-np.clip(72 * octaves, 0.0, 90.0) / 10)

    def shelf(edge_hz):  # a shallower fall (48 dB per octave), then gone at 1.5 x the edge
        octaves = np.log2(np.maximum(freqs_hz, 1.0) / edge_hz)
        power = 10 ** (-np.clip(48 * octaves, 0.0, 90.0) / 10)
        return np.where(freqs_hz >= 1.5 * edge_hz, 1e-11, power)

    rows = np.stack([skirt(4000), shelf(4000), skirt(8000), shelf(8000)])
    cutoffs = np.array([4000.0, 4000.0, 8000.0, 8000.0])
    drops = [steepest_fall_db(level, edge, SR, 1024)
             for level, edge in zip(smooth_db(rows), cutoffs)]
    assert drops[0] < 15 < 30 < drops[1], drops
    tested = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, target_hz=6000.0,
                                  max_length_ratio=2.0, max_shelf_drop_db=30.0)
    untested = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, target_hz=6000.0,
                                    max_length_ratio=2.0)
    assert untested.select(4, cutoffs, rows, 17000.0).tolist() == [True] * 4
    assert tested.select(4, cutoffs, rows, 17000.0).tolist() == [True, False, True, True]
    assert cutoff_scaling({**SCALING, "max_shelf_drop_db": 30})["max_shelf_drop_db"] == 30.0


def test_the_default_scales_a_butterworth_4k_input_but_not_gsm(monkeypatch):
    """The default (card default-scaled-above-3k) runs the scaled network on a Butterworth
    4 kHz input (more than the network alone adds) and leaves GSM's windows to the engine's
    network: its output there is the same as the seventeenth session's default's, which
    scaled nothing below 5 kHz."""
    from pedalboard import GSMFullRateCompressor, Pedalboard

    ref = _music_like_noise(6.0, 3)
    x = lowpass(ref, SR, 4000, "butter", 6).astype(np.float32)
    tail = slice(2 * SR, None)
    base = _snr_db(ref[tail], x[tail])
    default = BandwidthExtender("default", num_threads=1)
    gain_default = _snr_db(ref[tail], default.process(x, SR)[tail]) - base
    assert default.stats.batches > 0
    above_5k = BandwidthExtender("default-scaled-above-5k", num_threads=1)
    gain_5k = _snr_db(ref[tail], above_5k.process(x, SR)[tail]) - base
    assert gain_default > gain_5k + 0.3, (gain_default, gain_5k)
    # a harmonic tone (220 Hz, 1/k partials, a little noise) through GSM: detected at 4.3-4.4
    # kHz, with a shelf of images above that has_skirt takes for a skirt
    rng = np.random.default_rng(0)
    t = np.arange(4 * SR) / SR
    tone = sum(np.sin(2 * np.pi * 220 * k * t + 6 * rng.random()) / k for k in range(1, 60)
               if 220 * k < 20000)
    tone = tone / np.abs(tone).max() + 0.01 * rng.standard_normal(t.size)
    gsm = Pedalboard([GSMFullRateCompressor()])(0.5 * tone[None].astype(np.float32), SR)[0]
    gsm = gsm.astype(np.float32)
    scaled = {}
    original = rescale.CutoffScaler.run

    def counting(self, frames, index, *args):
        scaled[self.max_shelf_drop_db] = scaled.get(self.max_shelf_drop_db, 0) + len(index)
        return original(self, frames, index, *args)

    untested = BandwidthExtender("default", num_threads=1)
    setting = dict(untested.cutoff_scaling)
    assert setting.pop("max_shelf_drop_db") == 30.0
    untested._band_lock = {**untested._band_lock, "cutoff_scaling": setting}
    monkeypatch.setattr(rescale.CutoffScaler, "run", counting)
    y = BandwidthExtender("default", num_threads=1).process(gsm, SR)
    untested.process(gsm, SR)
    assert scaled.get(None, 0) > 0 and scaled.get(30.0, 0) == 0, scaled
    np.testing.assert_allclose(y, BandwidthExtender("default-scaled-above-5k",
                                                    num_threads=1).process(gsm, SR), atol=1e-5)


def test_the_scaled_learned_skirt_card_restores_a_gentle_filter_beyond_both_its_parts():
    """default-scaled-learned-skirt: the default's scaling with the learned skirt estimate and
    the scaled band lowered to 0.3 / 0.5. On a Butterworth 4 kHz input it restores more than
    the default (the trend rule's boost) and more than default-learned-skirt (no scaling), and
    it streams as it runs offline. Measured here (seconds 2-6): +2.45 dB, the default +2.08,
    default-learned-skirt +1.89 (at 8 kHz +3.33 / +3.23 / +2.28; at 11 kHz, above the
    scaling, +2.47 / +0.79 / +2.48)."""
    ref = _music_like_noise(6.0, 3)
    x = lowpass(ref, SR, 4000, "butter", 6).astype(np.float32)
    tail = slice(2 * SR, None)
    base = _snr_db(ref[tail], x[tail])
    gains = {name: _snr_db(ref[tail], BandwidthExtender(name, num_threads=1).process(x, SR)[tail])
             - base for name in ("default", "default-learned-skirt",
                                 "default-scaled-learned-skirt")}
    card = json.loads((WEIGHTS_DIR / "default-scaled-learned-skirt.json").read_text())
    assert card["skirt_model"] == "skirt-mlp" and card["skirt_eq"] is True
    assert gains["default-scaled-learned-skirt"] > gains["default"] + 0.2, gains
    assert gains["default-scaled-learned-skirt"] > gains["default-learned-skirt"] + 0.3, gains
    bwe = BandwidthExtender("default-scaled-learned-skirt", num_threads=1)
    offline = bwe.process(x[:3 * SR], SR)
    streamed = stream_in_random_blocks(bwe, x[:3 * SR], SR, max_block=4000, seed=4)
    lat = bwe.latency_samples
    np.testing.assert_allclose(streamed[lat:], offline[:-lat], atol=2e-5)


def test_a_resamplers_cliff_that_passes_the_width_test_is_not_scaled_with_the_edge_test():
    """A resampler detected a little under its cliff: a gentle start for 0.16 x the cutoff,
    then the cliff. The width test (MIN_WIDTH) takes it for a skirt; a card's
    ``max_edge_drop_db`` (the steepest fall within EDGE_SPAN x the cutoff: over 100 dB here,
    at most 51 dB on the validation filter windows) leaves it to the engine's network. A
    filter's skirt passes."""
    from rtbwe.skirt import EDGE_SPAN, steepest_fall_db

    freqs_hz = np.fft.rfftfreq(1024, 1 / SR)
    octaves = np.log2(np.maximum(freqs_hz, 1.0) / 3800.0)
    cliff = np.where(freqs_hz >= 1.16 * 3800.0, 1e-12,
                     10 ** (-np.clip(72 * octaves, 0.0, 16.0) / 10))
    skirt = 10 ** (-np.clip(72 * octaves, 0.0, 90.0) / 10)
    rows, cutoffs = np.stack([cliff, skirt]), np.full(2, 3800.0)
    falls = [steepest_fall_db(level, 3800.0, SR, 1024, EDGE_SPAN) for level in smooth_db(rows)]
    assert falls[1] < 30 < 55 < falls[0], falls
    assert has_skirt(smooth_db(cliff[None])[0], 3800.0, SR, 1024, min_width=rescale.MIN_WIDTH)
    plain = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, 6000.0, 2.0)
    tested = rescale.CutoffScaler("arunet-small-cond-6k", SR, 1024, 6000.0, 2.0,
                                  max_edge_drop_db=55.0)
    assert plain.select(2, cutoffs, rows, 17000.0).tolist() == [True, True]
    assert tested.select(2, cutoffs, rows, 17000.0).tolist() == [False, True]
    assert cutoff_scaling({**SCALING, "max_edge_drop_db": 55})["max_edge_drop_db"] == 55.0
    assert cutoff_scaling({**SCALING, "max_edge_drop_db": -1}) is None
