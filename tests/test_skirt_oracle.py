"""The skirt oracle (training/skirt_oracle.py): the boost by a known filter's inverse, the
reference ``rtbwe-train eval --matrix --skirt-oracle`` measures skirt estimates against."""
import numpy as np
import pytest
from scipy import signal

from rtbwe import BandwidthExtender, filters
from rtbwe.passband import DetectedBandLock
from rtbwe.training import skirt_oracle
from rtbwe.training.degrade import Degradation
from rtbwe.training.matrix import evaluate_matrix
from rtbwe.training.skirt_oracle import FilterInverse, oracle_lock

SR, W = 48000, 1024
BUTTER_8K = Degradation("filter", filters.FilterSpec("butter", 6), 8000.0)


def test_gain_is_the_zero_phase_filters_inverse_capped():
    estimate = FilterInverse(filters.FilterSpec("butter", 6), 8000.0)
    freqs_hz = np.fft.rfftfreq(W, 1 / SR)
    gain = estimate.gain(np.ones((2, W // 2 + 1)), np.array([7900.0, SR / 2]), SR, W)
    assert gain.shape == (2, W // 2 + 1)
    assert not gain[1].any()  # full band (or not yet known): no boost
    boost_db = 20 * np.log10(1 + gain[0])
    attenuation_db = -filters.zero_phase_response_db(SR, 8000.0, "butter", 6, freqs_hz)
    at_cutoff = int(np.argmin(np.abs(freqs_hz - 8000.0)))
    assert boost_db[at_cutoff] == pytest.approx(attenuation_db[at_cutoff], abs=0.05)
    assert abs(attenuation_db[at_cutoff] - 6.02) < 0.3  # sosfiltfilt: -3 dB twice
    capped = (attenuation_db > skirt_oracle.CAP_DB) & (attenuation_db < skirt_oracle.END_DB)
    assert capped.any() and np.allclose(boost_db[capped], skirt_oracle.CAP_DB)
    assert not boost_db[attenuation_db >= skirt_oracle.END_DB + 0.1].any()  # the stopband
    assert not boost_db[freqs_hz < 4000.0].any()


def test_oracle_replaces_the_estimate_on_filter_rows_only():
    settings = {"gain": 1.0, "skirt_eq": False, "skirt_model": None}
    lock = oracle_lock(settings, BUTTER_8K)
    assert lock["skirt_eq"] and isinstance(lock["skirt_model"], FilterInverse)
    assert settings["skirt_model"] is None  # a copy
    assert DetectedBandLock(SR, W, **lock).skirt_estimator is lock["skirt_model"]
    for other in (None, Degradation("resample", rate_hz=16000, resampler="soxr"),
                  Degradation("gsm")):
        assert oracle_lock(settings, other) is settings
    assert oracle_lock(False, BUTTER_8K) is False  # no lock: nothing to boost
    with pytest.raises(ValueError, match="cap_db"):
        FilterInverse(filters.FilterSpec("butter", 6), 8000.0, cap_db=40.0, end_db=30.0)


def test_matrix_with_the_oracle_restores_a_known_skirt():
    """Noise that ends at 10.4 kHz, low-passed by a Butterworth 6 at 8 kHz: its missing band
    is all skirt, which the filter's inverse gives back and the default's estimate cannot
    know (measured: +7.2 dB against +0.06)."""
    rng = np.random.default_rng(0)
    clean = signal.sosfiltfilt(signal.ellip(10, 0.1, 100, 10400.0, fs=SR, output="sos"),
                               rng.standard_normal(3 * SR))
    clean = (0.3 * clean / np.abs(clean).max()).astype(np.float32)
    bwe = BandwidthExtender("default", num_threads=1)
    settings = bwe._band_lock
    rows = ("butter-6 8 kHz",)
    plain = evaluate_matrix(bwe, [clean], rows)[0]
    oracle = evaluate_matrix(bwe, [clean], rows, skirt_oracle=True)[0]
    assert bwe._band_lock is settings  # the card's own lock once the matrix is done
    assert plain.clips == oracle.clips == 1
    assert oracle.dsnr_db > 3.0 and oracle.dsnr_db > plain.dsnr_db + 3.0
