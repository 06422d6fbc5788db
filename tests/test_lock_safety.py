"""The detected-band lock's safety factors (issue 11, never worse): the gate on content the
detection did not see, the level cap, and the calibration that fits both on captured windows."""
import numpy as np
import pytest
from scipy import signal

from helpers import random_tiny, stream_in_random_blocks
from rtbwe import BandwidthExtender
from rtbwe.conditioning import full_bin_power
from rtbwe.tracker import band_ratio_db, octave_level_db, octave_rolloff_db
from rtbwe.passband import (DARK_GATE_DB, GATE_FULL_DB, GATE_OFF_DB, ROLLOFF_GATE_DB,
                            DetectedBandLock)

SR = 48000


def _lowpassed_noise(seconds: float, cutoff_hz: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sos = signal.cheby1(8, 0.1, cutoff_hz, fs=SR, output="sos")
    return (0.1 * signal.sosfilt(sos, rng.standard_normal(int(seconds * SR)))).astype(np.float32)


def test_band_ratio_db_measures_the_band_above_the_cutoff():
    rng = np.random.default_rng(1)
    white = full_bin_power(rng.standard_normal((2, 1024)))
    dark = full_bin_power(_lowpassed_noise(1024 / SR + 0.1, 6000, 2)[None, -1024:])
    ratio, below = band_ratio_db(np.vstack([white, dark]), np.full(3, 6000.0), SR, 1024)
    # white noise: 18 - 6.6 kHz above vs 3 kHz below -> about +6 dB; low-passed: far below
    assert 3 < ratio[0] < 9 and 3 < ratio[1] < 9
    assert ratio[2] < -20 and below.min() > 0  # (Hann leakage of the passband)
    full, _ = band_ratio_db(white, np.array([SR / 2, SR / 2]), SR, 1024)
    assert np.all(full == 0)


def test_gate_and_cap_scale_each_window():
    lock = DetectedBandLock(SR, 1024, max_added_ratio=1.0)
    added = np.ones((4, 1024))
    added_power = (added * added) @ lock._hann_sq
    cutoff = np.full(4, 6000.0)
    excess = np.array([0.0, GATE_FULL_DB, (GATE_FULL_DB + GATE_OFF_DB) / 2, GATE_OFF_DB])
    gains = lock.window_gains(cutoff, added, excess, np.full(4, 1e9))   # cap never binds
    np.testing.assert_allclose(gains, [1.0, 1.0, 0.5, 0.0])
    below = added_power[:3] * np.array([4.0, 0.25, 0.0])                # cap: sqrt(ratio)
    gains = lock.window_gains(cutoff[:3], added[:3], np.zeros(3), below)
    np.testing.assert_allclose(gains, [1.0, 0.5, 0.0])
    no_cap = DetectedBandLock(SR, 1024, max_added_ratio=None, gate=False)
    np.testing.assert_allclose(no_cap.window_gains(cutoff, added, excess, np.zeros(4)), 1.0)


def _dark_noise(seconds: float, corner_hz: float, seed: int) -> np.ndarray:
    """Noise falling 18 dB per octave above ``corner_hz`` (three one-pole low-passes), low-passed
    at 6 kHz: dark all the way down to the filter's edge, like a muted piano."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * SR))
    pole = np.exp(-2 * np.pi * corner_hz / SR)
    for _ in range(3):
        x = signal.lfilter([1 - pole], [1, -pole], x)
    x = signal.sosfilt(signal.cheby1(8, 0.1, 6000, fs=SR, output="sos"), x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_octave_rolloff_db_tells_flat_from_dark_spectra():
    rng = np.random.default_rng(11)
    white = full_bin_power(rng.standard_normal((1, 1024)))
    dark = full_bin_power(_dark_noise(1.0, 500, 12)[None, -1024:])
    power = np.vstack([white, dark, white])
    cutoff = np.array([6000.0, 6000.0, SR / 2])
    out = np.full(3, np.nan)
    octave_rolloff_db(power, 3, cutoff, SR / 1024, SR / 2, out)
    assert 1 < out[0] < 5                        # white: twice the bins, +3 dB
    assert out[1] < ROLLOFF_GATE_DB[1] - 3       # -18 dB per octave: about -15 dB
    assert out[2] == 0.0                         # Nyquist: nothing to gate


def test_rolloff_gate_scales_each_window():
    full_db, off_db = ROLLOFF_GATE_DB
    lock = DetectedBandLock(SR, 1024, max_added_ratio=None, rolloff_gate_db=ROLLOFF_GATE_DB)
    assert lock.needs_rolloff
    rolloff = np.array([3.0, full_db, (full_db + off_db) / 2, off_db, -20.0])
    args = (np.full(5, 6000.0), np.ones((5, 1024)), np.zeros(5), np.full(5, 1e9), rolloff)
    np.testing.assert_allclose(lock.window_gains(*args), [1.0, 1.0, 0.5, 0.0, 0.0])
    default = DetectedBandLock(SR, 1024, max_added_ratio=None)   # off unless a card sets it
    assert not default.needs_rolloff
    np.testing.assert_allclose(default.window_gains(*args), 1.0)


@pytest.mark.parametrize("value, expected", [
    (None, None), ([-5, -9], (-5.0, -9.0)), ([-9, -5], None), ([-5, float("nan")], None),
    ("loud", None), ([-5], None), ([-5, -9, -12], None)])
def test_card_rolloff_gate_is_checked(value, expected):
    from rtbwe.processor import rolloff_gate_db
    assert rolloff_gate_db(value) == expected


def test_rolloff_gate_keeps_dark_input_and_extends_flat_input():
    """With the roll-off gate on, a spectrum dark all the way to the cutoff gets no added band
    while low-passed white noise at the same cutoff does; without it (the default) both do."""
    dark, flat = _dark_noise(3.0, 500, 13), _lowpassed_noise(3.0, 6000, 14)
    late = slice(2 * SR, 3 * SR)  # after the first detections
    for gate in (True, False):
        for x, expect_band in ((dark, not gate), (flat, True)):
            bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
            if gate:
                bwe._band_lock = {**bwe._band_lock, "rolloff_gate_db": ROLLOFF_GATE_DB}
            y = bwe.process(x, SR)
            assert 5500 < bwe.input_bandwidth_hz < 6500
            err_db = 10 * np.log10(np.sum((y[late] - x[late]) ** 2) / np.sum(x[late] ** 2))
            assert (err_db > -60) if expect_band else (err_db < -100), (gate, err_db)


def test_octave_level_db_tells_music_from_a_passage_dark_far_below_its_cutoff():
    rng = np.random.default_rng(15)
    white = full_bin_power(rng.standard_normal((1, 1024)))
    dark = full_bin_power(_dark_noise(1.0, 150, 16)[None, -1024:])
    power = np.vstack([white, dark, white])
    out = np.full(3, np.nan)
    octave_level_db(power, 3, np.array([6000.0, 6000.0, SR / 2]), SR / 1024, SR / 2, out)
    assert out[0] == pytest.approx(10 * np.log10(64 / 512), abs=1.0)  # 64 of 512 bins
    assert out[1] < DARK_GATE_DB[1] - 10       # 18 dB per octave from 150 Hz
    assert out[2] == 0.0                        # Nyquist: nothing to gate


def test_dark_gate_scales_each_window_and_the_skirt_boost():
    full_db, off_db = DARK_GATE_DB
    lock = DetectedBandLock(SR, 1024, max_added_ratio=None)
    level = np.array([-20.0, full_db, (full_db + off_db) / 2, off_db, -70.0])
    args = (np.full(5, 6000.0), np.ones((5, 1024)), np.zeros(5), np.full(5, 1e9),
            np.zeros(5), level)
    np.testing.assert_allclose(lock.window_gains(*args), [1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(lock.window_gains(*args[:5]), 1.0)  # no level: no gate
    ungated = DetectedBandLock(SR, 1024, max_added_ratio=None, gate=False)
    np.testing.assert_allclose(ungated.window_gains(*args), 1.0)
    # the skirt boost: a row past the gate gets none, one half way gets half
    boosting = DetectedBandLock(SR, 1024, max_added_ratio=None, skirt_eq=True)
    rng = np.random.default_rng(17)
    inputs = rng.standard_normal((3, 1024)).astype(np.float32)
    skirts = np.zeros((3, 513))
    skirts[:, 128:160] = 2.0
    boosts = []
    for level_db in ([-20.0] * 3, [-20.0, (full_db + off_db) / 2, off_db - 1]):
        out = inputs.copy()
        boosting.add_skirt(inputs, out, np.arange(3), skirts, np.zeros(3), np.array(level_db))
        boosts.append(out - inputs)
    assert np.abs(boosts[0]).max(axis=1).min() > 1e-3  # every row boosted when bright
    np.testing.assert_allclose(boosts[1][0], boosts[0][0])
    np.testing.assert_allclose(boosts[1][1], 0.5 * boosts[0][1], rtol=1e-5, atol=1e-6)
    assert not boosts[1][2].any()


def test_dark_gate_keeps_a_dark_passage_and_extends_music():
    """A passage dark far below a 6 kHz filter (18 dB per octave from 150 Hz) comes out as it
    went in; low-passed white noise at the same cutoff is still extended."""
    dark, flat = _dark_noise(3.0, 150, 18), _lowpassed_noise(3.0, 6000, 19)
    late = slice(2 * SR, 3 * SR)  # after the first detections
    for x, expect_band in ((dark, False), (flat, True)):
        bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
        y = bwe.process(x, SR)
        assert bwe.input_bandwidth_hz is not None and bwe.input_bandwidth_hz < 8000
        err_db = 10 * np.log10(np.sum((y[late] - x[late]) ** 2) / np.sum(x[late] ** 2))
        assert (err_db > -60) if expect_band else (err_db < -100), (expect_band, err_db)


def test_no_hiss_on_digital_silence():
    """Band-limited music, then silence: the network's output on silence (its biases) is
    not added, because the window holds nothing in the octave below the cutoff."""
    x = np.concatenate([_lowpassed_noise(2.0, 6000, 3), np.zeros(SR, np.float32)])
    bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
    y = bwe.process(x, SR)
    assert bwe.input_bandwidth_hz is not None and bwe.input_bandwidth_hz < 8000
    assert np.abs(y[int(2.1 * SR):]).max() == 0.0
    free = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1, passband="free")
    assert np.abs(free.process(x, SR)[int(2.1 * SR):]).max() > 1e-3  # there was hiss to stop


def test_new_wide_content_is_kept_not_replaced():
    """A dark start sets a low cutoff; when full-band content arrives, the windows until the
    next detection hold far more above the cutoff than the detection saw: the gate keeps
    them as they are instead of replacing their high band with the network's."""
    from rtbwe.tracker import DETECT_EVERY_FRAMES, min_history_frames

    hop = 512
    # the wide content starts two frames after a detection (frame index d = frames seen - 1):
    # frames d + 2 ... d + 7 hold it while the cutoff is still the dark one
    detection = min_history_frames(SR, hop) - 1 + 4 * DETECT_EVERY_FRAMES
    onset = (detection + 2) * hop
    rng = np.random.default_rng(5)
    dark = _lowpassed_noise(onset / SR + 0.01, 5000, 6)[:onset]
    wide = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)
    x = np.concatenate([dark, wide])
    bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
    y = bwe.process(x, SR)
    after = slice(onset, onset + (DETECT_EVERY_FRAMES - 3) * hop)  # only gated frames
    err_db = 10 * np.log10(np.sum((y[after] - x[after]) ** 2) / np.sum(x[after] ** 2))
    assert err_db < -40
    ungated = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
    ungated._band_lock = {"gain": 1.0, "max_added_ratio": None, "gate": False}
    y_ungated = ungated.process(x, SR)
    err_ungated = 10 * np.log10(np.sum((y_ungated[after] - x[after]) ** 2)
                                / np.sum(x[after] ** 2))
    assert err_ungated > err_db + 20  # without the gate the window's high band is replaced


def test_streaming_equals_offline_with_gate_and_cap():
    x = np.concatenate([_lowpassed_noise(1.2, 5000, 7), np.zeros(SR // 4, np.float32),
                        _lowpassed_noise(1.0, 9000, 8)])
    bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1)
    offline = bwe.process(x, SR)
    bwe.reset()
    streamed = stream_in_random_blocks(bwe, x, SR, max_block=1500)
    lat = bwe.latency_samples
    np.testing.assert_allclose(streamed[lat:], offline[:x.size - lat], atol=2e-5)


@pytest.mark.parametrize("skirt_eq", [False, True])
def test_calibration_reconstructs_the_processor_and_never_loses_on_its_data(skirt_eq):
    """Gains fitted on captures rebuild the processor's output; with the skirt boost on, the
    boost is in the captured base (not gained), and the rebuild still holds."""
    from rtbwe.training import calibrate as cal
    from rtbwe.training.matrix import matrix_rows

    rng = np.random.default_rng(9)
    clip = (0.1 * rng.standard_normal(int(1.5 * SR))).astype(np.float32)
    bwe = BandwidthExtender(random_tiny(4), sample_rate=SR, num_threads=1, skirt_boost=skirt_eq)
    captures = []
    for row in ("butter-6 6 kHz", "cheby1-6 8 kHz"):
        x = matrix_rows()[row].apply(clip, SR)
        captures.append(cal.capture(bwe, clip, x, row))
        boosted = not np.array_equal(captures[-1].error, clip.astype(np.float64) - x)
        assert boosted == skirt_eq
        if skirt_eq:  # the base the gains are fitted on: the boosted input
            x = clip - captures[-1].error
        for cap in (None, 0.25):
            gains = np.linspace(0.5, 2.0, len(cal.GAIN_EDGES_HZ))
            lock = DetectedBandLock(SR, bwe.window_samples, max_added_ratio=cap)
            rebuilt = x + gains @ cal._components(captures[-1], lock, bwe.window,
                                                  bwe.hop_samples)
            bwe._band_lock = {"gain": [[e, g] for e, g in zip(cal.GAIN_EDGES_HZ, gains)],
                              "max_added_ratio": cap, "skirt_eq": skirt_eq}
            degraded = matrix_rows()[row].apply(clip, SR)
            np.testing.assert_allclose(bwe.process(degraded, SR), rebuilt, atol=1e-5)
    stats = cal.pair_statistics(captures, [0, 1], DetectedBandLock(SR, bwe.window_samples),
                                bwe.window, bwe.hop_samples)
    gains = cal.least_squares_gains(stats)
    assert all(0.0 <= g <= cal.MAX_FITTED_GAIN for g in gains)
    without = sum(p.base for p in stats)
    for shrink in (1.0, 0.5):
        assert sum(p.error(shrink * gains) for p in stats) <= without * (1 + 1e-9)
    # the shrink rule: never-worse first, then the best mean
    table = [{"shrink": 1.0, "worst_row_db": -1.0, "mean_row_db": 0.3},
             {"shrink": 0.5, "worst_row_db": -0.01, "mean_row_db": 0.2},
             {"shrink": 0.25, "worst_row_db": 0.0, "mean_row_db": 0.1}]
    assert cal.choose_shrink(table) == 0.5
    assert cal.choose_shrink([{**r, "worst_row_db": r["worst_row_db"] - 1} for r in table]) == 0.25


@pytest.mark.parametrize("value, expected", [(None, None), (0.5, 0.5), (-1, 1.0),
                                             (float("nan"), 1.0), ("x", 1.0), (True, 1.0)])
def test_card_max_added_ratio_is_checked(value, expected):
    from rtbwe.passband import DEFAULT_MAX_ADDED_RATIO
    from rtbwe.processor import max_added_ratio

    assert max_added_ratio(value) == (DEFAULT_MAX_ADDED_RATIO if expected == 1.0 else expected)


def test_export_calibrate_writes_the_lock_settings(tmp_path, capsys):
    """`rtbwe-train export RUN STEM --calibrate DATA`: the card gets the fitted gains, the
    cap and the cross-validation, and a processor loads them."""
    import json

    import soundfile as sf

    from rtbwe import save_model
    from rtbwe.training.calibrate import GAIN_EDGES_HZ, SHRINK_CANDIDATES
    from rtbwe.training.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pieces = []
    for i, split in enumerate(("validation", "validation", "train", "test")):
        name = f"{split}{i}.flac"
        sf.write(corpus / name, _lowpassed_noise(1.5, 20000, 30 + i), SR)
        pieces.append({"file": name, "split": split})
    (corpus / "manifest.json").write_text(json.dumps({"pieces": pieces}))
    run = tmp_path / "run"
    run.mkdir()
    from rtbwe import models

    save_model(random_tiny(4), run / "best", {"model": "tiny", "sample_rate": SR,
                                               "model_class": "ARUNet",
                                               "model_kwargs": models.build_kwargs("tiny")[1]})
    assert main(["export", str(run), str(tmp_path / "out"), "--calibrate", str(corpus),
                 "--clips", "2", "--clip-seconds", "1.5"]) == 0
    assert "cross-validated worst row" in capsys.readouterr().out
    card = json.loads((tmp_path / "out.json").read_text())
    assert [edge for edge, _ in card["extension_gain"]] == list(GAIN_EDGES_HZ)
    assert card["max_added_ratio"] == 1.0 and card["calibration"]["shrink"] in SHRINK_CANDIDATES
    bwe = BandwidthExtender(str(tmp_path / "out.json"), num_threads=1)
    assert bwe.extension_gain == card["extension_gain"] and bwe.max_added_ratio == 1.0
    assert "rolloff_gate_db" not in card and bwe.rolloff_gate_db is None
    assert main(["export", str(run), str(tmp_path / "gated"), "--calibrate", str(corpus),
                 "--clips", "2", "--clip-seconds", "1.5", "--rolloff-gate-db", "-5", "-9"]) == 0
    gated = json.loads((tmp_path / "gated.json").read_text())
    assert gated["rolloff_gate_db"] == [-5.0, -9.0]
    assert gated["calibration"]["rolloff_gate_db"] == [-5.0, -9.0]
    assert BandwidthExtender(str(tmp_path / "gated.json"), num_threads=1).rolloff_gate_db \
        == (-5.0, -9.0)
    assert card["skirt_eq"] is False and card["calibration"]["skirt_eq"] is False
    # --skirt-eq: the gains are fitted on top of the skirt boost, and the card turns it on
    assert main(["export", str(run), str(tmp_path / "boosted"), "--calibrate", str(corpus),
                 "--clips", "2", "--clip-seconds", "1.5", "--skirt-eq"]) == 0
    boosted = json.loads((tmp_path / "boosted.json").read_text())
    assert boosted["skirt_eq"] is True and boosted["calibration"]["skirt_eq"] is True
    assert BandwidthExtender(str(tmp_path / "boosted.json"), num_threads=1).skirt_eq is True
    # --latest: the run's last checkpoint (weights_only) instead of best.json's weights
    import torch
    later = random_tiny(5)
    torch.save({"model": later.state_dict(), "step": 7, "elapsed": 1.5}, run / "checkpoint.pt")
    assert main(["export", str(run), str(tmp_path / "latest"), "--latest"]) == 0
    from rtbwe.weights import load_model
    latest = load_model(tmp_path / "latest.json")
    assert latest.card["steps"] == 7
    for name, tensor in later.state_dict().items():
        assert torch.equal(latest.state_dict()[name], tensor)
    # an inverted gate (full below off) would make a card the processor ignores: refused first
    with pytest.raises(SystemExit, match="FULL > OFF"):
        main(["export", str(run), str(tmp_path / "inverted"), "--calibrate", str(corpus),
              "--rolloff-gate-db", "-9", "-5"])
    assert not (tmp_path / "inverted.json").exists()
