"""Training for every bandwidth: degradations, the stream-exact sampler, the matrix, a run."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import conditioning, filters
from rtbwe.training import config as config_mod
from rtbwe.training import degrade, matrix
from rtbwe.training.data import AudioPool
from rtbwe.training.trainer import Trainer
from rtbwe.tracker import SpectrumTracker

SR = 48000


def _broadband(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate(rng.uniform(100, 900, 5), 1))
    hats = np.exp(-(np.arange(n) % 6000) / 900.0) * rng.standard_normal(n)
    return (0.2 * x / 3 + 0.2 * hats).astype(np.float32)


def _folder(tmp_path, n=5, seconds=3.0):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"take{i}.flac", _broadband(seconds, i), SR, subtype="PCM_24")
    return folder


@pytest.mark.parametrize("kind", ["filter", "resample-soxr", "resample-pedalboard", "mp3",
                                  "mp3-cbr", "gsm"])
def test_degradations_keep_length_and_alignment(kind):
    x = _broadband(1.5, 0)
    d = {"filter": degrade.Degradation("filter", filters.FilterSpec("butter", 6), 5000.0),
         "resample-soxr": degrade.Degradation("resample", rate_hz=16000, resampler="soxr-HQ"),
         "resample-pedalboard": degrade.Degradation("resample", rate_hz=22050,
                                                    resampler="pedalboard-WindowedSinc16"),
         "mp3": degrade.Degradation("mp3", vbr_quality=5.0),
         "mp3-cbr": degrade.Degradation("mp3-cbr", bitrate_kbps=64),
         "gsm": degrade.Degradation("gsm")}[kind]
    y = d.apply(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    low_x, low_y = (filters.lowpass(v, SR, 2500, "butter", 8)[SR // 4:-SR // 4] for v in (x, y))
    lags = range(-40, 41)
    corr = [np.dot(np.roll(low_y, -lag), low_x) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0  # aligned to the sample: pairs are trainable


def test_draw_respects_the_target_bandwidth():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = degrade.draw(rng, 9000.0)
        assert d.band_limit_hz() <= 9000.0, d


def test_fixed_cutoff_training_drops_targets_that_stop_below_the_cutoff():
    """The 6 kHz task on mixed data keeps only tracks whose own bandwidth clears the cutoff
    by TARGET_MARGIN: a recording that stops at 5 kHz would teach the network to add
    nothing; with none left it says so."""
    from rtbwe.training.trainer import targets_clearing_cutoff

    bright = _broadband(2.0, 1)
    dark = filters.lowpass(bright, SR, 5000.0, "cheby1", 8).astype(np.float32)
    pool = AudioPool([bright, dark, bright], ["a", "dark", "c"], SR)
    logged = []
    kept = targets_clearing_cutoff(pool, 6000.0, logged.append)
    assert kept.names == ["a", "c"] and len(kept.bandwidth_hz) == 2
    assert min(kept.bandwidth_hz) * degrade.TARGET_MARGIN >= 6000.0
    assert "1 of 3 training tracks left out" in logged[0]
    with pytest.raises(ValueError, match="clears the 6000 Hz cutoff"):
        targets_clearing_cutoff(AudioPool([dark], ["dark"], SR), 6000.0, logged.append)


def test_stretched_copies_move_every_frequency_by_their_factor():
    """stretched_pool: a 1 kHz tone stretched by 1.5 is a 1.5 kHz tone, 1 / 1.5 as long; the
    originals stay; a bad stretch setting is refused by the config."""
    from rtbwe.training.config import from_dict
    from rtbwe.training.data import stretched_pool

    tone = np.sin(2 * np.pi * 1000.0 * np.arange(SR) / SR).astype(np.float32)
    pool = stretched_pool(AudioPool([tone], ["tone"], SR), 1.5, 1.5, 2, seed=3)
    assert pool.names == ["tone", "tone@x1.500", "tone@x1.500"]
    copy = pool.tracks[1]
    assert copy.dtype == np.float32 and abs(len(copy) - SR / 1.5) <= 2
    spectrum = np.abs(np.fft.rfft(copy * np.hanning(len(copy))))
    assert abs(np.argmax(spectrum) * SR / len(copy) - 1500.0) < 3.0
    assert from_dict({"stretch": [0.6, 2, 2]}).stretch == (0.6, 2.0, 2.0)
    assert from_dict({"stretch": []}).stretch == ()
    for bad in ([0.6, 2], [2, 0.6, 1], [0.6, 2, 1.5], [0.1, 2, 1], 3, "0.6", [0.6, "2", 1]):
        with pytest.raises(ValueError, match="stretch"):
            from_dict({"stretch": bad})
    with pytest.raises(ValueError, match="cutoff task"):
        from_dict({"stretch": [0.6, 2, 1], "degradations": "wide"})


def test_stream_state_equals_the_tracker():
    x = filters.lowpass(_broadband(2.5, 1), SR, 7000, "cheby1", 8)
    end = 2 * SR + 333
    condition, bandwidth, cutoff = degrade.stream_state(x, end, SR, conditioning.WIDE_BANDS)
    frames_total = (end - 1024) // 512 + 1
    start = end - 1024 - (frames_total - 1) * 512
    frames = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(
        x[start:end], 1024)[::512][:frames_total])
    tracker = SpectrumTracker(1, SR, 1024, 512, conditioning.WIDE_BANDS)
    out = np.zeros((frames_total, conditioning.WIDE_BANDS), np.float32)
    cutoffs = np.zeros(frames_total)
    tracker.update(frames, frames_total, out, cutoffs)
    np.testing.assert_allclose(condition, out[-1], atol=1e-5)
    assert bandwidth == pytest.approx(tracker.bandwidth_hz[0]) and cutoff == cutoffs[-1]
    assert abs(bandwidth / 7000 - 1) < 0.1


def test_wide_sampler_batches():
    pool = AudioPool([_broadband(4.0, i) for i in range(3)], ["a", "b", "c"], SR,
                     bandwidth_hz=[24000.0, 24000.0, 12000.0])
    sampler = degrade.WideSampler(pool, 4096, conditioning.WIDE_BANDS, seed=0)
    x, y, c, low, high = sampler.batch(6)
    assert x.shape == y.shape == (6, 1, 4096) and c.shape == (6, conditioning.WIDE_BANDS)
    assert np.all(low < high) and np.all(high <= 24000)
    assert np.all(c[:, -1] == pytest.approx(low / 24000))
    state = sampler.state()
    again = degrade.WideSampler(pool, 4096, conditioning.WIDE_BANDS, seed=0)
    again.set_state(state)
    np.testing.assert_array_equal(sampler.batch(2)[0], again.batch(2)[0])


def test_matrix_row_scores_an_identity_as_no_change():
    clips = [_broadband(1.5, i) for i in range(2)]
    rows = matrix.matrix_rows()
    same = matrix.evaluate_row("butter-6 6 kHz", rows["butter-6 6 kHz"], clips,
                               lambda x: (x, 6000.0), SR, [24000.0, 24000.0])
    assert same.dsnr_db == pytest.approx(0.0, abs=1e-6) and same.worse_fraction == 0
    full = matrix.evaluate_row("full band", None, clips, lambda x: (x, None), SR)
    assert full.dsnr_db > 100  # output = input


@pytest.mark.parametrize("workers", [0, 1])
def test_wide_training_runs_resumes_and_records_its_recipe(tmp_path, workers):
    folder = _folder(tmp_path)
    cfg = config_mod.TrainConfig(
        name="w", model="tiny-cond", model_kwargs={"condition_bands": conditioning.WIDE_BANDS},
        degradations="wide", data=str(folder), steps=3, batch_size=2, segment_samples=2048,
        val_every=3, val_clips=1, val_clip_seconds=1.0, checkpoint_every=2, log_every=1,
        threads=1, device="cpu", data_workers=workers)
    Trainer(cfg, tmp_path / "run", log=lambda s: None).train()
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["training"]["degradations"] == "wide"
    assert card["model_kwargs"]["condition_bands"] == conditioning.WIDE_BANDS
    assert np.isfinite(card["validation"]["mean_dsnr"])
    resumed = Trainer(cfg.replace(steps=4), tmp_path / "run", log=lambda s: None)
    assert resumed.load_checkpoint() and resumed.step == 3
    resumed.train(resume=False)
    assert resumed.step == 4 and all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_matrix_rows_use_only_clips_that_hold_what_they_remove():
    clips = [_broadband(1.2, i) for i in range(3)]
    row = matrix.matrix_rows()["butter-6 14 kHz"]
    seen = []

    def run(x):
        seen.append(x)
        return x, 14000.0
    result = matrix.evaluate_row("butter-6 14 kHz", row, clips, run, SR,
                                 [24000.0, 10000.0, 16000.0])
    assert result.clips == 2 and len(seen) == 2  # the 10 kHz clip holds nothing at 14 kHz
    assert matrix.evaluate_row("full band", None, clips, run, SR,
                               [24000.0, 17000.0, 19000.0]).clips == 1


def test_lsd_hf_to_own_bandwidth_ignores_what_the_reference_never_held():
    """A band added above a (lossy) reference's own bandwidth counts in LSD-HF to Nyquist,
    not in LSD-HF up to the clip's own bandwidth; below it both see the same change."""
    from scipy import signal

    from rtbwe import filters

    clip = filters.lowpass(_broadband(2.0, 7), SR, 12000.0).astype(np.float32)  # own: 12 kHz
    rng = np.random.default_rng(1)
    hiss = signal.sosfiltfilt(signal.butter(8, 17000.0, "highpass", fs=SR, output="sos"),
                              0.05 * rng.standard_normal(clip.size))
    row = matrix.matrix_rows()["butter-6 8 kHz"]

    def above_own(x):
        return (x + hiss).astype(np.float32), 8000.0

    result = matrix.evaluate_row("butter-6 8 kHz", row, [clip], above_own, SR, [11000.0])
    assert result.lsd_hf_out > result.lsd_hf_in + 0.1          # the hiss counts to Nyquist
    assert abs(result.lsd_own_out - result.lsd_own_in) < 0.01  # not up to 11 kHz
    same = matrix.evaluate_row("butter-6 8 kHz", row, [clip], lambda x: (x, 8000.0), SR,
                               [12000.0])
    assert same.lsd_own_out == same.lsd_own_in and np.isfinite(same.lsd_own_in)
    full = matrix.evaluate_row("full band", None, [clip], lambda x: (x, None), SR, [24000.0])
    assert np.isnan(full.lsd_own_in) and "—" in matrix.markdown_table([full], "t")


def test_calibrated_lock_never_loses_on_its_own_data():
    """Least-squares gains per bucket of cutoff times the cross-validated shrink: within
    range, and the pooled error with them is never above the lock's without an added band
    (the error is convex in the gains, and 0 and the least-squares gains are both feasible)."""
    from helpers import random_tiny

    from rtbwe.training.calibrate import (GAIN_EDGES_HZ, GAIN_FLOOR_CANDIDATES, MAX_FITTED_GAIN,
                                          SHRINK_CANDIDATES, fit_lock)

    clips = [_broadband(1.5, 10 + i) for i in range(2)]
    fit = fit_lock(random_tiny(4), clips)
    assert fit["pairs"] > 0 and len(fit["extension_gain"]) == len(GAIN_EDGES_HZ)
    assert fit["shrink"] in SHRINK_CANDIDATES
    assert fit["gain_floor"] in (0.0, *GAIN_FLOOR_CANDIDATES)
    assert len(fit["cross_validation"]) == len(SHRINK_CANDIDATES)
    assert all(0.0 <= g <= MAX_FITTED_GAIN for _, g in fit["extension_gain"])
    assert fit["error_fitted"] <= fit["error_without_band"] * (1 + 1e-9)


def _pairs_with_a_blind_bucket(blind_scale: float, clips: int = 6):
    """PairStats over two rows: bucket 0 holds a band correlated with the error, bucket 6
    (13-17 kHz) and the top bucket a band of ``blind_scale`` x the error's size, independent
    of it (the network knows nothing there)."""
    from rtbwe.training.calibrate import GAIN_EDGES_HZ, PairStats

    rng = np.random.default_rng(3)
    pairs = []
    for row in ("a", "b"):
        for clip in range(clips):
            e = rng.standard_normal(4000)
            s = np.zeros((len(GAIN_EDGES_HZ), e.size))
            s[0] = 0.8 * e + 0.5 * rng.standard_normal(e.size)
            s[6] = blind_scale * rng.standard_normal(e.size)
            s[-1] = blind_scale * rng.standard_normal(e.size)
            pairs.append(PairStats(row, clip, float(e @ e), s @ e, s @ s.T))
    return pairs


def test_gain_floor_is_taken_only_where_the_cross_validation_cannot_see_it():
    """A floor below 17 kHz lifts buckets that least squares leaves near 0, when it costs at
    most FLOOR_COST_DB of the cross-validated rows; a band that costs more gets no floor, and
    the top bucket (above 17 kHz) never gets one."""
    from rtbwe.training.calibrate import (GAIN_FLOOR_CANDIDATES, choose_floor, floored,
                                          least_squares_gains)

    cheap = _pairs_with_a_blind_bucket(0.01)
    floor, table = choose_floor(cheap, 0.5)
    assert floor == max(GAIN_FLOOR_CANDIDATES) and len(table) == len(GAIN_FLOOR_CANDIDATES)
    gains = floored(0.5 * least_squares_gains(cheap), floor)
    assert gains[6] == floor and gains[-1] < 0.1 and gains[0] > 0.3
    costly = _pairs_with_a_blind_bucket(1.0)
    assert choose_floor(costly, 0.5)[0] == 0.0
    assert np.array_equal(floored(np.zeros(8), 0.0), np.zeros(8))


def test_gain_table_applies_per_window_cutoff():
    from rtbwe.passband import DetectedBandLock
    from rtbwe.processor import extension_gains

    lock = DetectedBandLock(SR, 1024, gain=[[5000.0, 0.0], [9000.0, 2.0], [float("inf"), 1.0]])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3, 1024)).astype(np.float32)
    out = y.copy()
    lock.apply(x, out, 3, np.array([4000.0, 8000.0, 12000.0]))
    reference = y.copy()
    DetectedBandLock(SR, 1024).apply(x, reference, 3, np.array([4000.0, 8000.0, 12000.0]))
    np.testing.assert_allclose(out[0], x[0], atol=1e-6)                        # gain 0
    np.testing.assert_allclose(out[1] - x[1], 2 * (reference[1] - x[1]), atol=1e-5)
    np.testing.assert_allclose(out[2], reference[2], atol=1e-6)                # gain 1
    assert extension_gains([[9e3, 9.0], [5e3, 1.0]]) == [[float("inf"), 1.0]]  # falling edges
    assert extension_gains(float("nan")) == [[float("inf"), 1.0]]
    assert extension_gains([[9e3, 9.0]]) == [[9000.0, 4.0]]                   # clipped
