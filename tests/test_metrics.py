"""Metrics against hand-computed values."""
import numpy as np
import pytest
import torch

from rtbwe import metrics, vggish

SR = 48000


def test_snr_hand_computed():
    ref = np.array([3.0, 4.0], np.float32)          # power 25
    est = np.array([3.0, 3.0], np.float32)          # noise 1
    assert metrics.snr_db(ref, est) == pytest.approx(10 * np.log10(25.0))


def test_snr_sums_over_channels():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])        # power 2
    est = np.array([[1.0, 0.0], [0.0, 0.0]])        # noise 1 (one channel only)
    assert metrics.snr_db(ref, est) == pytest.approx(10 * np.log10(2.0))
    assert metrics.snr_db(ref, ref) == float("inf")


def test_snr_rejects_shape_mismatch_and_nan():
    with pytest.raises(ValueError, match="same shape"):
        metrics.snr_db(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.snr_db(np.array([1.0, np.nan]), np.zeros(2))


def test_lsd_of_a_scaled_signal_is_log_of_the_gain():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR // 2)
    # power scaled by 100 -> log10 power differs by exactly 2 in every bin and frame
    assert metrics.lsd(x, 10 * x, SR) == pytest.approx(2.0, abs=1e-9)
    assert metrics.lsd(x, x, SR) == 0.0


def test_lsd_floor_hand_computed():
    # silence vs signal: silence sits at the 1e-10 floor in every bin
    x = np.zeros(4096)
    y = np.zeros(4096)
    y[2048] = 1.0  # an impulse: flat power 1 (times the window value) in the frame around it
    spec = metrics.log_power_spectrogram(y)
    expected_frames = np.sqrt(np.mean((spec[0] + 10.0) ** 2, axis=0))  # log10(1e-10) = -10
    assert metrics.lsd(x, y) == pytest.approx(float(np.mean(expected_frames)))


def test_log_power_spectrogram_matches_a_direct_fft():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(8192)
    spec = metrics.log_power_spectrogram(x)  # (1, 1025, frames)
    assert spec.shape == (1, 1025, 1 + 8192 // 512)
    padded = np.pad(x, 1024)
    frame3 = padded[3 * 512: 3 * 512 + 2048] * np.hanning(2049)[:-1]  # periodic Hann
    direct = np.log10(np.maximum(np.abs(np.fft.rfft(frame3)) ** 2, 1e-10))
    assert np.allclose(spec[0, :, 3], direct)


def test_lsd_hf_only_sees_the_high_band():
    rng = np.random.default_rng(2)
    t = np.arange(SR) / SR
    low = np.sin(2 * np.pi * 440 * t)
    high = 0.1 * rng.standard_normal(SR)
    from rtbwe import filters

    high = high - filters.lowpass(high.astype(np.float32), SR, 8000.0, "butter", 12)
    ref = low + high
    # an estimate that differs only below the cutoff has LSD-HF ~ 0 but LSD > 0
    est = 0.5 * low + high
    assert metrics.lsd_hf(ref, est, SR, 8000.0) < 0.01
    assert metrics.lsd(ref, est, SR) > 0.01
    # an estimate missing the high band has a large LSD-HF
    assert metrics.lsd_hf(ref, low, SR, 8000.0) > 1.0


def test_lsd_bands_equals_lsd_and_lsd_hf_from_one_spectrogram_each():
    """What the degradation matrix computes per clip in one pass is what lsd / lsd_hf give."""
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((2, SR // 2))
    estimates = [ref + 0.1 * rng.standard_normal(ref.shape), 0.5 * ref]
    bands = [(None, None), (6000.0, None), (6000.0, 11000.0)]
    values = metrics.lsd_bands(ref, estimates, SR, bands)
    for i, est in enumerate(estimates):
        assert values[i].tolist() == [metrics.lsd(ref, est, SR),
                                      metrics.lsd_hf(ref, est, SR, 6000.0),
                                      metrics.lsd_hf(ref, est, SR, 6000.0, 11000.0)]
    with pytest.raises(ValueError, match="cutoff_hz"):
        metrics.lsd_hf(ref, estimates[0], SR, 0.0)
    with pytest.raises(ValueError, match="upper_hz"):
        metrics.lsd_bands(ref, estimates, SR, [(6000.0, 5000.0)])


def test_visqol_orders_quality():
    pytest.importorskip("visqol")
    rng = np.random.default_rng(3)
    t = np.arange(2 * SR) / SR
    ref = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))
           + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    from rtbwe import filters

    degraded = filters.lowpass(ref, SR, 4000.0, "butter", 6)
    same = metrics.visqol(ref, ref, SR)
    worse = metrics.visqol(ref, degraded, SR)
    assert 1.0 <= worse < same <= 5.0


def _random_vggish_file(tmp_path, with_pca):
    torch.manual_seed(0)
    net = vggish.VGGish()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("pca_")}
    if with_pca:
        state["pproc._pca_matrix"] = torch.eye(128)
        state["pproc._pca_means"] = torch.zeros(128, 1)
    path = tmp_path / "vggish.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("with_pca", [False, True])
def test_vggish_distance_real_loading_path(tmp_path, with_pca):
    path = _random_vggish_file(tmp_path, with_pca)
    rng = np.random.default_rng(4)
    ref = 0.1 * rng.standard_normal(SR * 2).astype(np.float32)
    est = ref.copy()
    est[: SR] = 0.0
    assert metrics.vggish_distance(ref, ref, SR, str(path)) == 0.0
    d = metrics.vggish_distance(ref, est, SR, str(path))
    assert d > 0
    emb = vggish.embed(vggish.load_vggish(path), ref, SR)
    assert emb.shape == (2, 128)  # two 0.96 s examples in 2 s


def test_vggish_log_mel_front_end():
    x = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    patches = vggish.log_mel_examples(x, 16000)
    assert patches.shape == (1, 1, 96, 64)
    band = np.argmax(patches[0, 0].mean(axis=0))
    mel = 1127 * np.log1p(np.array([125.0, 1000.0, 7500.0]) / 700)
    expected = (mel[1] - mel[0]) / (mel[2] - mel[0]) * 65 - 1
    assert abs(band - expected) <= 1.5


def test_vggish_without_weights_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="torchvggish"):
        metrics.vggish_distance(np.zeros(16000), np.zeros(16000), 16000, None)
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvggish state dict"):
        vggish.load_vggish(bad)


def test_band_error_sums_to_the_snr_and_locates_the_error():
    sr = 48000
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((2, sr + 1)).astype(np.float32)  # odd length, stereo
    t = np.arange(sr + 1) / sr
    estimate = reference + 0.01 * np.sin(2 * np.pi * 7200 * t)  # error only at 7.2 kHz
    bands = metrics.band_error_db(reference, estimate, sr)
    assert bands.shape == (len(metrics.BAND_EDGES_HZ) - 1,)
    linear = 10 ** (bands / 10)
    assert np.isclose(10 * np.log10(linear.sum()), -metrics.snr_db(reference, estimate),
                      atol=1e-6)
    k = metrics.BAND_EDGES_HZ.index(7000)  # the 7-8 kHz band holds it all
    assert linear[k] > 0.999 * linear.sum()
    with pytest.raises(ValueError, match="edges_hz"):
        metrics.band_error_db(reference, estimate, sr, edges_hz=(0, 5000, 3000))
