"""Conditioning on the input's long-term spectrum: the tracker, the training-time shortcut,
the conditioned model through every engine path, and a conditioned training run."""
import copy
import json

import numpy as np
import pytest
import torch

from rtbwe import BandwidthExtender, conditioning, engine, filters, kernels, models
from rtbwe.training import clip_conditions
from rtbwe.training import config as config_mod
from rtbwe.training.data import AudioPool, PairSampler, TrackSpectra
from rtbwe.training.trainer import Trainer
from rtbwe.tracker import SpectrumTracker, band_ratio_db, last_detection_frame

SR = 48000
W, H = 1024, 512


def _music(seconds=3.0, seed=0):
    """Harmonic tones with a falling spectrum, plus a little noise: (samples,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in (220.0, 330.0, 415.0):
        for k in range(1, 40):
            if f0 * k < 20000:
                x += np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k
    x += 0.01 * rng.standard_normal(len(t))
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def _frames(x):
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(x, W)[::H])


def test_tracker_is_the_decayed_mean_of_frame_powers():
    x = _music(2.0)
    frames = _frames(x)
    tracker = SpectrumTracker(1, SR, W, H)
    out = np.empty((len(frames), conditioning.NUM_BANDS), np.float32)
    for start in range(0, len(frames), 7):  # any grouping gives the same conditions
        chunk = frames[start:start + 7]
        tracker.update(chunk, len(chunk), out[start:start + 7])
    power = conditioning.pool_bands(conditioning.bin_power(frames, SR), SR, W)
    d = conditioning.decay_per_frame(SR, H)
    for k in (0, 5, len(frames) - 1):
        weights = d ** np.arange(k, -1, -1)
        expected = conditioning.to_condition(weights @ power[:k + 1] / weights.sum())
        np.testing.assert_allclose(out[k], expected, atol=1e-5)
    np.testing.assert_allclose(out[0], conditioning.to_condition(power[0]), atol=1e-6)


@pytest.mark.parametrize("bands", [0, conditioning.NUM_BANDS, conditioning.WIDE_BANDS])
def test_tracker_kernels_equal_the_numpy_path_and_the_public_functions(bands):
    """The tracker's Numba kernels against their NumPy twins (rtbwe.kernels.reference) over a
    stereo stream with bandwidth detections, in uneven groups of frames; and its condition and
    contrast against conditions_from_power / band_ratio_db (what training and the lock's docs
    use) on the same long-term and per-window powers."""
    from rtbwe.kernels import reference

    hop = 768
    x = np.stack([filters.lowpass(_music(2.5, seed=1), SR, 7000, "cheby1", 8),
                  filters.lowpass(_music(2.5, seed=2), SR, 11000, "butter", 8)])
    x[1, SR // 2:SR // 2 + 2000] *= 200.0  # far over the clip level for a while
    frames = np.stack([np.lib.stride_tricks.sliding_window_view(c, W)[::hop] for c in x])
    fast = SpectrumTracker(2, SR, W, hop, bands)
    slow = SpectrumTracker(2, SR, W, hop, bands)
    slow.kernels = reference
    rng = np.random.default_rng(0)
    start, detections, checked = 0, 0, 0
    while start < frames.shape[1]:
        count = min(int(rng.integers(1, 11)), frames.shape[1] - start)
        batch = np.ascontiguousarray(frames[:, start:start + count].reshape(2 * count, W))
        results = []
        for tracker in (fast, slow):
            out = np.zeros((2 * count, bands), np.float32) if bands else None
            cutoffs, contrast = np.zeros(2 * count), (np.zeros(2 * count), np.zeros(2 * count))
            tracker.update(batch, count, out, cutoffs, contrast)
            results.append((out, cutoffs, contrast))
        (out, cutoffs, contrast), (out_ref, cutoffs_ref, contrast_ref) = results
        np.testing.assert_array_equal(fast.sums, slow.sums)
        np.testing.assert_array_equal(fast.bandwidth_hz, slow.bandwidth_hz)
        np.testing.assert_array_equal(cutoffs, cutoffs_ref)
        np.testing.assert_allclose(contrast[0], contrast_ref[0], atol=1e-9)
        np.testing.assert_allclose(contrast[1], contrast_ref[1], rtol=1e-12)
        last = [count - 1, 2 * count - 1]  # each channel's last frame: its average is sums / w
        if bands:
            np.testing.assert_allclose(out, out_ref, atol=1e-6)
            expected = conditioning.conditions_from_power(
                fast.sums / fast.weights[:, None], cutoffs[last], bands, SR, W)
            np.testing.assert_allclose(out[last], expected, atol=1e-6)
        power = conditioning.full_bin_power(np.clip(batch, -8, 8))
        ratio_db, below = band_ratio_db(power, cutoffs, SR, W)
        reference_db = np.repeat(fast.reference_db, count)
        if last_detection_frame(start + count, SR, hop) <= start:  # none in here
            np.testing.assert_allclose(contrast[0], ratio_db - reference_db, atol=1e-9)
            checked += 1
        np.testing.assert_allclose(contrast[1], below, rtol=1e-12)
        detections += fast.frames_seen >= fast.min_frames
        start += count
    assert detections and checked and fast.widest_hz == pytest.approx(fast.bandwidth_hz.max())
    assert abs(fast.bandwidth_hz[0] / 7000 - 1) < 0.1  # (the clipped glitch widens channel 1)


def test_condition_ignores_level_and_silence_is_zero():
    x = _music(1.0)
    a = clip_conditions.clip_condition(x, SR)
    np.testing.assert_allclose(clip_conditions.clip_condition(0.01 * x, SR), a, atol=1e-3)
    assert np.all(clip_conditions.clip_condition(np.zeros(SR, np.float32), SR) == 0)
    assert a.shape == (conditioning.NUM_BANDS,) and a.dtype == np.float32
    lo, hi = conditioning.FLOOR_DB / conditioning.SCALE_DB, conditioning.CEILING_DB / conditioning.SCALE_DB
    assert np.all((a >= lo - 1e-6) & (a <= hi + 1e-6))


def test_condition_tells_butterworth_from_chebyshev_at_the_knee():
    x = _music(3.0)
    cheby = clip_conditions.clip_condition(filters.lowpass(x, SR, 6000, "cheby1", 6), SR)
    butter = clip_conditions.clip_condition(filters.lowpass(x, SR, 6000, "butter", 6), SR)
    centres = conditioning.band_edges_hz()[:-1] + conditioning.BAND_WIDTH_HZ / 2
    knee = (centres > 5000) & (centres < 6000)
    below = centres < 4000
    scale = conditioning.SCALE_DB
    assert np.max(np.abs(cheby[below] - butter[below])) * scale < 0.5
    assert np.mean(cheby[knee] - butter[knee]) * scale > 1.5  # Butterworth already droops


def test_training_shortcut_matches_the_filtered_signal():
    """Clean frame powers x the filter's response = the filtered signal's frame powers."""
    x = _music(4.0, seed=3)
    pool = AudioPool([x], ["m"], SR)
    spectra = TrackSpectra(pool, W, H)
    end = len(x) - 1000
    last = (end - W) // H
    for spec in (filters.FilterSpec("cheby1", 6), filters.FilterSpec("butter", 6),
                 filters.FilterSpec("cheby2", 4)):
        got = spectra.condition(0, end, spec, 6000.0, np.random.default_rng(0),
                                history_frames=last + 1)
        frames = _frames(filters.apply(x, SR, 6000.0, spec))[:last + 1]
        tracker = SpectrumTracker(1, SR, W, H)
        out = np.empty((len(frames), conditioning.NUM_BANDS), np.float32)
        tracker.update(frames, len(frames), out)
        centres = conditioning.band_edges_hz()[:-1] + conditioning.BAND_WIDTH_HZ / 2
        audible = centres < 9000  # deeper in the stopband float rounding differs
        np.testing.assert_allclose(got[audible] * 30, out[-1][audible] * 30, atol=0.5)


def test_conditioned_batches_have_one_condition_per_segment():
    pool = AudioPool([_music(2.0, seed=s) for s in range(3)], ["a", "b", "c"], SR)
    sampler = PairSampler(pool, segment_samples=4096, augment_set="table1+cheby2", seed=0)
    x, y, c = sampler.conditioned_batch(5)
    assert x.shape == y.shape == (5, 1, 4096) and c.shape == (5, conditioning.NUM_BANDS)
    assert c.dtype == np.float32 and np.isfinite(c).all()
    assert len({tuple(np.round(row, 4)) for row in c}) > 1
    drawn = {str(sampler.filter_for_segment()) for _ in range(400)}
    assert {"cheby2-4", "cheby2-6", "cheby2-8", "cheby1-6"} <= drawn and "butter-6" not in drawn


@pytest.fixture()
def cond_net():
    torch.manual_seed(0)
    net = models.build("tiny-cond").eval()
    with torch.no_grad():  # a FiLM that does something (it starts at zero)
        for p in net.film.parameters():
            p.normal_(0.0, 0.2)
    return net


def test_zero_film_is_the_plain_arunet_and_shapes_are_checked():
    plain = models.build("tiny").eval()
    cond = models.build("tiny-cond").eval()
    missing = cond.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("film.") for k in missing)
    x = torch.randn(2, 1, 1000)
    torch.testing.assert_close(cond(x, torch.randn(2, conditioning.NUM_BANDS)), plain(x))
    with pytest.raises(ValueError, match="condition of shape"):
        cond(x, torch.randn(3, conditioning.NUM_BANDS))
    with pytest.raises(ValueError, match="condition of shape"):
        cond(x, torch.randn(2, 7))


def test_condition_changes_the_output(cond_net):
    x = torch.randn(1, 1, 1024)
    a = cond_net(x, torch.zeros(1, conditioning.NUM_BANDS))
    b = cond_net(x, -torch.ones(1, conditioning.NUM_BANDS))
    assert (a - b).abs().max() > 1e-3


def test_engine_needs_conditions_for_a_conditioned_model(cond_net):
    eng = engine.InferenceEngine(cond_net, W, device="cpu", backend="eager")
    assert eng.condition_bands == conditioning.NUM_BANDS
    frames = np.zeros((2, W), np.float32)
    with pytest.raises(ValueError, match="condition bands"):
        eng.run(frames, 2, frames)
    with pytest.raises(ValueError, match="conditions must be"):
        eng.run(frames, 2, frames, np.zeros((2, 3), np.float32))
    plain = engine.InferenceEngine(models.build("tiny"), W, device="cpu", backend="eager")
    with pytest.raises(ValueError, match="condition bands"):
        plain.run(frames, 2, frames, np.zeros((2, conditioning.NUM_BANDS), np.float32))


@pytest.mark.parametrize("backend", ["eager", "torchscript"])
@pytest.mark.parametrize("keep_below_hz", [None, 3000.0])
def test_streaming_equals_offline_with_conditions(cond_net, backend, keep_below_hz):
    x = np.stack([_music(2.0, seed=1), _music(2.0, seed=2)])
    bwe = BandwidthExtender(copy.deepcopy(cond_net), SR, device="cpu", backend=backend,
                            keep_below_hz=keep_below_hz)
    offline = bwe.process(x, SR)
    bwe.reset()
    rng = np.random.default_rng(4)
    blocks, pos = [], 0
    while pos < x.shape[1] + bwe.latency_samples:
        n = int(rng.integers(1, 3000))
        block = np.zeros((2, n), np.float32)
        part = x[:, pos:pos + n]
        block[:, :part.shape[1]] = part
        blocks.append(bwe.process(block, SR, reset=False))
        pos += n
    streamed = np.concatenate(blocks, axis=1)[:, bwe.latency_samples:][:, :x.shape[1]]
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    assert np.abs(offline - x).max() > 1e-3  # the net did something


def test_torchscript_export_keeps_the_condition(cond_net, tmp_path):
    path = engine.export_torchscript(cond_net, tmp_path / "m.ts", W, SR)
    module, meta = engine.load_torchscript(path)
    assert meta["condition_bands"] == conditioning.NUM_BANDS
    x = np.stack([_music(1.0, seed=5)])
    eager = BandwidthExtender(cond_net, SR, device="cpu").process(x, SR)
    scripted = BandwidthExtender(str(path), device="cpu", backend="torchscript").process(x, SR)
    np.testing.assert_allclose(scripted, eager, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none visible")
@pytest.mark.gpu
def test_cuda_graph_with_conditions_matches_cpu(cond_net):
    x = np.stack([_music(1.0, seed=6), _music(1.0, seed=7)])
    cpu = BandwidthExtender(copy.deepcopy(cond_net), SR, device="cpu").process(x, SR)
    gpu = BandwidthExtender(copy.deepcopy(cond_net), SR, device="cuda").process(x, SR)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_conditioned_training_run_and_warm_start(tmp_path):
    import soundfile as sf

    from rtbwe.weights import load_model

    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(6):
        sf.write(folder / f"p{i}.flac", _music(2.0, seed=i), SR, subtype="PCM_24")
    base = config_mod.TrainConfig(name="t", model="tiny", data=str(folder), steps=2,
                                  batch_size=2, segment_samples=2048, val_every=2, val_clips=2,
                                  val_clip_seconds=0.5, checkpoint_every=100, log_every=1,
                                  threads=1, device="cpu")
    Trainer(base, tmp_path / "plain", log=lambda s: None).train()
    cfg = base.replace(model="tiny-cond", augment_set="table1+cheby2",
                       init_from=str(tmp_path / "plain" / "best.json"))
    messages = []
    Trainer(cfg, tmp_path / "cond", log=messages.append).train()
    assert any("conditioning tensors start at their init" in m for m in messages)
    card = json.loads((tmp_path / "cond" / "best.json").read_text())
    assert card["model_class"] == "ConditionedARUNet"
    model = load_model(tmp_path / "cond" / "best.json")
    assert model.condition_bands == conditioning.NUM_BANDS
    out = BandwidthExtender(model, device="cpu").process(_music(0.5), SR)
    assert out.shape == (SR // 2,) and np.isfinite(out).all()


def test_stream_survives_bad_audio_with_conditions(cond_net):
    """NaN, Inf and huge samples in a live stream: no exception, finite output, and the
    tracker recovers (the condition after the bad block is finite)."""
    bwe = BandwidthExtender(cond_net, SR, device="cpu")
    good = _music(0.5, seed=8)[None]
    bad = good.copy()
    bad[0, 100:200] = np.nan
    bad[0, 300] = np.inf
    bad[0, 400:410] = 1e30
    for block in (good, bad, good, good):
        out = bwe.process(block, SR, reset=False)
        assert out.shape == block.shape and np.isfinite(out).all()
    assert bwe.stats.nonfinite_input_samples == 101
    tracker = bwe._stream.tracker
    assert np.isfinite(tracker.sums).all() and np.isfinite(bwe._stream.path.conditions).all()
    # the 1e30 burst is clipped before it enters the average (unclipped: ~1e63)
    assert tracker.sums.max() < 1e9


def test_a_stream_that_starts_mid_signal_leaves_no_click_in_the_long_term_spectrum():
    """An input resampled via 8 kHz that starts at full level (an excerpt): the processor's
    first window steps from its W - H zeros into it. The tracker fades x in there
    (context_samples), so after 1 s its long-term stopband lies > 100 dB under the
    passband (measured 129); without the fade the step's click sits there, 64 dB under
    this white passband (about 35 dB under a validation clip's darker one, sixteenth
    session), hiding the stopband from the bandwidth detection and the skirt boost."""
    import soxr

    rng = np.random.default_rng(3)
    x = soxr.resample(soxr.resample(rng.standard_normal(2 * SR), SR, 8000), 8000, SR)
    x = (0.3 * x).astype(np.float32)
    hop = 768
    padded = np.zeros((1, len(x) + 2 * W), np.float32)
    padded[0, W - hop:W - hop + len(x)] = x  # as rtbwe.streaming frames a stream
    freqs_hz = np.fft.rfftfreq(W, 1 / SR)
    gaps = {}
    for context in (W - hop, 0):
        tracker = SpectrumTracker(1, SR, W, hop, 0, context_samples=context)
        frames = np.empty((8, W), np.float32)
        for first in range(0, 64, 8):
            kernels.frame_signal(padded, first * hop, hop, 8, frames)
            tracker.update(frames, 8, None)
        power = tracker.long_term_power(8)[-1]
        gaps[context] = 10 * np.log10(power[(freqs_hz > 1000) & (freqs_hz < 3000)].mean()
                                      / power[(freqs_hz > 8000) & (freqs_hz < 20000)].mean())
    assert gaps[W - hop] > 100.0, gaps
    assert gaps[0] < 75.0, gaps  # the click the fade removes


def test_names_moved_to_the_tracker_module_still_import_from_conditioning():
    """The tracker left rtbwe.conditioning for rtbwe.tracker (twenty-first session); code that
    imported it from the old place gets the same objects, and a typo still raises."""
    from rtbwe import tracker

    for name in conditioning._MOVED:
        assert getattr(conditioning, name) is getattr(tracker, name)
    from rtbwe.conditioning import SpectrumTracker as old  # noqa: N813
    assert old is SpectrumTracker
    with pytest.raises(AttributeError, match="no attribute 'SpectrumTrackr'"):
        conditioning.SpectrumTrackr  # noqa: B018
