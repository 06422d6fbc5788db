"""The filter bank: physical facts at the cutoff, zero phase, stopband, errors."""
import numpy as np
import pytest

from rtbwe import filters

SR, FC = 48000, 6000.0


def tone(freq_hz, seconds=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return np.sin(2 * np.pi * freq_hz * t).astype(np.float32)


def gain_db(freq_hz, family, order):
    x = tone(freq_hz)
    y = filters.lowpass(x, SR, FC, family, order)
    mid = slice(len(x) // 4, 3 * len(x) // 4)  # away from the edges
    return 20 * np.log10(np.std(y[mid]) / np.std(x[mid]))


def test_butterworth_is_minus_6_db_at_cutoff_after_filtfilt():
    # -3 dB per pass, two passes (zero phase)
    assert gain_db(FC, "butter", 6) == pytest.approx(-6.02, abs=0.1)


def test_bessel_mag_norm_is_minus_6_db_at_cutoff():
    assert gain_db(FC, "bessel", 6) == pytest.approx(-6.02, abs=0.15)


@pytest.mark.parametrize("family,order", [("cheby1", 6), ("cheby1", 12), ("ellip", 6), ("ellip", 12)])
def test_equiripple_families_are_at_twice_the_ripple_at_cutoff(family, order):
    # scipy puts the ripple edge at the cutoff: -0.05 dB per pass. Elliptic 12 falls by
    # 45 dB within 10 Hz above it, so a finite tone cannot probe the edge: use the response.
    edge = filters.zero_phase_response_db(SR, FC, family, order, np.array([FC]))[0]
    assert edge == pytest.approx(-0.10, abs=0.005)
    # and within 2 x ripple throughout the passband, measured on tones
    for f in (500.0, 2000.0, 4500.0, 5800.0):
        assert -0.11 < gain_db(f, family, order) < 0.01


@pytest.mark.parametrize("spec", filters.TRAIN_FILTERS + filters.FLAT_FILTERS
                         + (filters.UNSEEN_TEST_FILTER,))
def test_stopband(spec):
    g = gain_db(2 * FC, spec.family, spec.order)
    limit = {"ellip": -39.0, "bessel": -20.0}.get(spec.family, -60.0)
    assert g < limit, f"{spec}: {g:.1f} dB at 2 x cutoff"


@pytest.mark.parametrize("order", [6, 12])
def test_ellip_stopband_peaks_at_20_db_per_pass(order):
    freqs = np.linspace(6500.0, 23900.0, 4000)
    db = filters.zero_phase_response_db(SR, FC, "ellip", order, freqs)
    assert db.max() == pytest.approx(-40.0, abs=0.2)  # equiripple stopband: -20 dB x 2 passes
    assert gain_db(3 * FC, "ellip", order) < -39.5


@pytest.mark.parametrize("family", filters.FAMILIES)
def test_zero_phase(family):
    x = tone(1000.0)
    y = filters.lowpass(x, SR, FC, family, 6)
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    # zero phase: the passband tone is not delayed -> correlation peak at lag 0
    xc = np.correlate(y[mid], x[mid], mode="full")
    assert np.argmax(xc) - (len(x[mid]) - 1) == 0
    assert np.allclose(y[mid], x[mid], atol=0.02)


def test_impulse_response_is_symmetric():
    x = np.zeros(4097, np.float32)
    x[2048] = 1.0
    y = filters.lowpass(x, SR, FC, "cheby1", 8)
    assert np.allclose(y, y[::-1], atol=1e-6)


def test_shapes_and_channels_independent():
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((2, 4800)).astype(np.float32)
    y = filters.lowpass(stereo, SR, FC, "butter", 6)
    assert y.shape == stereo.shape and y.dtype == np.float32
    assert np.allclose(y[1], filters.lowpass(stereo[1], SR, FC, "butter", 6), atol=1e-6)


@pytest.mark.parametrize("order", [4, 6, 8, 12])
def test_cheby2_is_flat_and_minus_6_db_at_the_cutoff(order):
    # designed from its stopband edge, placed so that -6 dB (zero-phase) falls on the cutoff
    # like every other family; the passband is monotone and flat, the stopband 2 x -40 dB
    assert filters.zero_phase_response_db(SR, FC, "cheby2", order, np.array([FC]))[0] \
        == pytest.approx(-6.02, abs=0.01)
    assert gain_db(FC, "cheby2", order) == pytest.approx(-6.02, abs=0.1)  # measured on a tone
    passband = filters.zero_phase_response_db(SR, FC, "cheby2", order,
                                              np.linspace(20.0, 0.5 * FC, 200))
    assert passband.min() > -0.05 and passband.max() <= 1e-9
    edge_hz = filters._cheby2_edge_hz(SR, FC, order)
    assert FC < edge_hz < 2 * FC
    stop = filters.zero_phase_response_db(SR, FC, "cheby2", order,
                                          np.linspace(edge_hz, 23900.0, 2000))
    assert stop.max() == pytest.approx(-80.0, abs=0.5)


def test_flat_augment_set_keeps_butterworth_unseen():
    flat = filters.AUGMENT_SETS["table1+flat"]
    assert flat[:8] == filters.TRAIN_FILTERS and set(filters.FLAT_FILTERS) <= set(flat)
    assert all(spec.family != "butter" for spec in flat)
    assert filters.AUGMENT_SETS["table1"] == filters.TRAIN_FILTERS


def test_table_one():
    assert len(filters.TRAIN_FILTERS) == 8
    assert str(filters.SEEN_TEST_FILTER) == "cheby1-6"
    assert filters.SEEN_TEST_FILTER in filters.TRAIN_FILTERS
    assert filters.UNSEEN_TEST_FILTER not in filters.TRAIN_FILTERS


@pytest.mark.parametrize("cutoff", [24000.0, 30000.0, 0.0])
def test_rejects_cutoff_outside_zero_to_nyquist(cutoff):
    with pytest.raises(ValueError, match="Nyquist"):
        filters.lowpass(tone(100.0), SR, cutoff)


def test_rejects_non_finite_and_names_the_index():
    x = tone(100.0)
    x[123] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(123,\)"):
        filters.lowpass(x, SR, FC)


def test_rejects_bad_shape_dtype_and_family():
    with pytest.raises(ValueError, match="shape"):
        filters.lowpass(np.zeros((1, 2, 3), np.float32), SR, FC)
    with pytest.raises(ValueError, match="dtype"):
        filters.lowpass(np.zeros(100, np.int16), SR, FC)
    with pytest.raises(ValueError, match="family"):
        filters.lowpass(tone(100.0), SR, FC, "chebyshev")


def test_response_helper_matches_measurement():
    db = filters.zero_phase_response_db(SR, FC, "butter", 6, np.array([FC, 2 * FC]))
    assert db[0] == pytest.approx(gain_db(FC, "butter", 6), abs=0.1)
