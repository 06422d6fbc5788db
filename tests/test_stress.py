"""The stress rows (training/stress.py): what each degrades, and that the matrix scores them."""
import numpy as np
import pytest
from torch import nn

from rtbwe import BandwidthExtender, filters
from rtbwe.training.matrix import evaluate_matrix
from rtbwe.training.stress import level_runner, stress_rows

SR = 48000


def _noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(
        np.float32)


def _band_db(x: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * np.log10(spectrum[(f >= low_hz) & (f < high_hz)].mean())


@pytest.mark.parametrize("name", list(stress_rows()))
def test_every_row_keeps_length_and_type(name):
    row = stress_rows()[name]
    x = _noise()
    y = x if row.degrade is None else row.apply(x, SR)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    assert 0 < row.band_limit_hz() <= SR / 2


def test_the_causal_filter_is_not_the_zero_phase_one():
    """Same magnitude family, but a causal filter delays the band near its cutoff."""
    x = _noise()
    causal = stress_rows()["butter-6 causal 8 kHz"].apply(x, SR)
    zero_phase = filters.apply(x, SR, 8000.0, filters.FilterSpec("butter", 6))
    assert _band_db(causal, 12000, 16000) < _band_db(x, 12000, 16000) - 15
    assert np.max(np.abs(causal - zero_phase)) > 0.01


def test_hiss_shelf_and_clipping_do_what_they_say():
    x = _noise()
    rows = stress_rows()
    hiss = rows["butter-6 8 kHz + hiss 40 dB down"].apply(x, SR)
    filtered = rows["butter-6 8 kHz, 40 dB down"].apply(x, SR)  # the same filter, no hiss
    added = hiss - filtered
    assert np.std(added) == pytest.approx(0.01 * np.sqrt(np.mean(filtered ** 2)), rel=0.02)
    shelf = rows["high shelf -12 dB at 6 kHz"].apply(x, SR)
    assert _band_db(shelf, 12000, 20000) == pytest.approx(_band_db(x, 12000, 20000) - 12, abs=1)
    clipped = rows["clipped at 30 % of peak"].apply(x, SR)
    assert np.abs(clipped).max() == pytest.approx(0.3 * np.abs(x).max(), rel=1e-5)


def test_level_runner_feeds_the_clip_down_and_raises_the_output_back():
    seen = []

    def run(x):
        seen.append(float(np.abs(x).max()))
        return x * 2, 1234.0

    x = _noise()
    out, bandwidth_hz = level_runner(run, -40.0)(x)
    assert seen[0] == pytest.approx(0.01 * np.abs(x).max(), rel=1e-5)
    np.testing.assert_allclose(out, 2 * x, rtol=1e-5)
    assert bandwidth_hz == 1234.0 and level_runner(run, 0.0) is run


def test_an_identity_processor_scores_zero_on_every_stress_row():
    """The wiring: with a processor that returns its input, every band-limited row's ΔSNR is
    0 and the quiet full-band row's output equals its input."""
    bwe = BandwidthExtender(nn.Identity(), num_threads=1)
    clips = [_noise(2.0, seed) for seed in range(2)]
    names = ("butter-6 causal 8 kHz", "butter-6 8 kHz, 40 dB down", "full band, 40 dB down",
             "high shelf -12 dB at 6 kHz")
    results = evaluate_matrix(bwe, clips, rows=names, stress=True)
    assert [r.name for r in results] == list(names)
    for r in results:
        assert r.clips == 2
        if r.name.startswith("full band"):
            assert r.dsnr_db > 100  # output vs input
        else:
            assert r.dsnr_db == pytest.approx(0.0, abs=1e-6)
