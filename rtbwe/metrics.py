"""Quality metrics: SNR, log-spectral distance (full band and high band), ViSQOL, VGG distance.

All functions take ``reference`` and ``estimate`` of equal shape, ``(samples,)`` or
``(channels, samples)``.

* ``snr_db``: ``10 log10(sum ref^2 / sum (ref - est)^2)`` over all samples and channels.
* ``lsd``: Hann STFT (n_fft 2048, hop 512), ``log10`` power clamped at 1e-10,
  RMS over frequency bins, mean over frames (and channels).
* ``lsd_hf``: the same over the bins above ``cutoff_hz`` only.
* ``band_error_energy`` / ``band_error_db``: where the error lies: error energy per
  frequency band, linear or in dB relative to the reference's total energy (the per-band
  terms of the SNR's denominator).
* ``visqol``: ViSQOL v3 audio mode (``pip install rtbwe[visqol]``), MOS-LQO in 1..5.
* ``vggish_distance``: see :mod:`rtbwe.vggish`.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

LSD_N_FFT = 2048
LSD_HOP = 512
LSD_FLOOR = 1e-10


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate must have the same shape, got {ref.shape} "
                         f"and {est.shape}")
    if ref.ndim not in (1, 2) or ref.shape[-1] == 0:
        raise ValueError(f"expected (samples,) or (channels, samples) with samples > 0, got "
                         f"{ref.shape}")
    for name, arr in (("reference", ref), ("estimate", est)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf")
    return np.atleast_2d(ref), np.atleast_2d(est)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-noise ratio in dB over the whole signal and all channels."""
    ref, est = _pair(reference, estimate)
    noise = np.sum((ref - est) ** 2)
    power = np.sum(ref**2)
    if noise == 0:
        return float("inf")
    if power == 0:
        return float("-inf")
    return float(10 * np.log10(power / noise))


BAND_EDGES_HZ = (0, 3000, 4500, 5500, 6000, 6500, 7000, 8000, 10000, 12000, 24000)


def band_error_energy(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                      edges_hz: tuple[float, ...] = BAND_EDGES_HZ) -> np.ndarray:
    """Error energy ``sum((reference - estimate) ** 2)`` split into the bands
    ``[edges_hz[k], edges_hz[k+1])``: (len(edges_hz) - 1,), linear, summed over channels. By
    Parseval the bands add up to the whole error energy when the edges cover 0 to Nyquist, so
    energies of several clips can be pooled by adding them.
    """
    edges = np.asarray(edges_hz, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges_hz must be increasing with at least two entries, got {edges_hz}")
    ref, est = _pair(reference, estimate)
    n = ref.shape[-1]
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    weight = np.full(freqs.shape, 2.0 / n)  # one-sided spectrum: DC and Nyquist count once
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    error = weight * np.sum(np.abs(np.fft.rfft(ref - est, axis=-1)) ** 2, axis=0)
    index = np.searchsorted(edges, freqs, side="right") - 1
    index[freqs == edges[-1]] = len(edges) - 2  # the top edge (Nyquist) closes the last band
    inside = (index >= 0) & (index < len(edges) - 1)
    return np.bincount(index[inside], weights=error[inside], minlength=len(edges) - 1)


def band_error_db(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                  edges_hz: tuple[float, ...] = BAND_EDGES_HZ) -> np.ndarray:
    """:func:`band_error_energy` in dB relative to the reference's total energy:
    (len(edges_hz) - 1,). The bands' linear sum is ``10 ** (-snr_db / 10)`` when the edges
    cover 0 to Nyquist.
    """
    bands = band_error_energy(reference, estimate, sample_rate, edges_hz)
    total = float(np.sum(np.asarray(reference, dtype=np.float64) ** 2))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(bands / total) if total > 0 else np.full(len(bands), np.inf)


def log_power_spectrogram(audio: np.ndarray, n_fft: int = LSD_N_FFT,
                          hop: int = LSD_HOP) -> np.ndarray:
    """log10 power spectrogram of (channels, samples) -> (channels, n_fft//2+1, frames).

    Unscaled ``|rfft(hann * frame)|^2`` with centred frames (zero padding of ``n_fft // 2``
    at both ends), as ``librosa.stft`` computes it by default.
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)))
    n_frames = 1 + (x.shape[-1] - n_fft) // hop
    window = signal.get_window("hann", n_fft)  # periodic Hann
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[:, idx] * window  # (channels, frames, n_fft)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    return np.log10(np.maximum(power, LSD_FLOOR)).transpose(0, 2, 1)


def _lsd_from_logs(log_ref: np.ndarray, log_est: np.ndarray, bins: slice) -> float:
    diff = (log_ref - log_est)[:, bins, :]
    per_frame = np.sqrt(np.mean(diff**2, axis=1))  # RMS over frequency -> (channels, frames)
    return float(np.mean(per_frame))


def lsd(reference: np.ndarray, estimate: np.ndarray, sample_rate: int | None = None) -> float:
    """Log-spectral distance over all bins (``sample_rate`` only for the signature's symmetry)."""
    ref, est = _pair(reference, estimate)
    return _lsd_from_logs(log_power_spectrogram(ref), log_power_spectrogram(est), slice(None))


def lsd_hf(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
           cutoff_hz: float, upper_hz: float | None = None) -> float:
    """Log-spectral distance over the bins strictly above ``cutoff_hz`` (and at or below
    ``upper_hz``, e.g. the reference's own bandwidth; None: up to Nyquist)."""
    ref, est = _pair(reference, estimate)
    return _lsd_from_logs(log_power_spectrogram(ref), log_power_spectrogram(est),
                          _band_bins(sample_rate, cutoff_hz, upper_hz))


def _band_bins(sample_rate: int, cutoff_hz: float | None, upper_hz: float | None) -> slice:
    """The LSD bins strictly above ``cutoff_hz`` and at or below ``upper_hz`` (None: no bound
    on that side)."""
    if cutoff_hz is not None and not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2}), got {cutoff_hz}")
    if upper_hz is not None and cutoff_hz is not None and not upper_hz > cutoff_hz:
        raise ValueError(f"upper_hz must be above cutoff_hz={cutoff_hz}, got {upper_hz}")
    freqs = np.fft.rfftfreq(LSD_N_FFT, 1.0 / sample_rate)
    first = None if cutoff_hz is None else int(np.searchsorted(freqs, cutoff_hz, side="right"))
    last = None if upper_hz is None else int(np.searchsorted(freqs, upper_hz, side="right"))
    return slice(first, last)


def lsd_bands(reference: np.ndarray, estimates: list[np.ndarray], sample_rate: int,
              bands_hz: list[tuple[float | None, float | None]]) -> np.ndarray:
    """(len(estimates), len(bands_hz)) log-spectral distances of each estimate to
    ``reference`` over each band ``(cutoff_hz, upper_hz)`` as :func:`lsd_hf` takes them
    (``(None, None)``: every bin, as :func:`lsd`), from one log spectrogram per signal."""
    bins = [_band_bins(sample_rate, low, high) for low, high in bands_hz]
    out = np.empty((len(estimates), len(bins)))
    log_ref = None
    for i, estimate in enumerate(estimates):
        ref, est = _pair(reference, estimate)
        if log_ref is None:
            log_ref = log_power_spectrogram(ref)
        log_est = log_power_spectrogram(est)
        out[i] = [_lsd_from_logs(log_ref, log_est, b) for b in bins]
    return out


def visqol(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """ViSQOL v3 audio-mode MOS-LQO (1..5). Needs ``visqol-python`` (``rtbwe[visqol]``).

    Audio mode is defined at 48 kHz; other rates are resampled with scipy's polyphase
    resampler. Multichannel input is averaged to mono.
    """
    try:
        import visqol  # noqa: F401
    except ImportError:
        raise ImportError("visqol needs the optional extra: pip install 'rtbwe[visqol]' "
                          "(the visqol-python package)") from None
    ref, est = _pair(reference, estimate)
    ref, est = ref.mean(axis=0), est.mean(axis=0)
    if sample_rate != 48000:
        from math import gcd

        g = gcd(48000, int(sample_rate))
        ref = signal.resample_poly(ref, 48000 // g, int(sample_rate) // g)
        est = signal.resample_poly(est, 48000 // g, int(sample_rate) // g)
    api = _visqol_api()
    return float(api.measure_from_arrays(ref, est, 48000).moslqo)


_VISQOL = None


def _visqol_api():
    global _VISQOL
    if _VISQOL is None:
        import contextlib
        import io

        from visqol import VisqolApi

        api = VisqolApi()
        with contextlib.redirect_stdout(io.StringIO()):
            api.create(mode="audio")
        _VISQOL = api
    return _VISQOL


def vggish_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                    weights_path: str | None) -> float:
    """The paper's VGG distance: mean |VGGish(ref) - VGGish(est)| over embeddings.

    ``weights_path`` is a torchvggish-format state dict (``torch.load(weights_only=True)``).
    """
    from .vggish import vggish_distance as _impl

    return _impl(reference, estimate, sample_rate, weights_path)
