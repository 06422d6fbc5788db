"""Keep the input's passband: let the network change only the band above ``keep_below_hz``.

A bandwidth extender adds a high band, but a network trained on the paper's Table I filters
also equalises the passband: it undoes the 0.1 dB ripple of Chebyshev-1 and elliptic filters
and the droop of Bessel ones. On input whose passband is flat (Butterworth, most codecs and
resamplers) that equalisation is an error (-41 dB at 0-3 kHz for the shipped model; see
docs/training.md). With a passband lock the output is

    output = input + highpass(network(input) - input)

so below ``keep_below_hz`` the output is the input (to within the FIR's stopband; tones
below it come back within -60 dB in tests/test_passband.py)
and above it the network's high band is added. The high-pass is a linear-phase (zero-phase
when centred) Kaiser FIR, applied per analysis window like the network itself, so the lock
adds no latency. It is one conv1d, so every engine backend runs it (eager and TorchScript are
tested; CUDA graphs capture it like any other op but are untested here, without a GPU).

Two ways to use it:

* ``BandwidthExtender(..., keep_below_hz=4500)`` wraps any model (:class:`PassbandLock`);
* ``ARUNet(..., keep_below_hz=4500)`` builds it into the network, so that it is trained
  with the lock and its model card says so.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from scipy import fft as scipy_fft
from scipy import signal
from torch import nn

from . import kernels
from .kernels.reference import ramp
from .conditioning import condition_bands
from .skirt import skirt_boost, skirt_responses
from .skirt_model import load_skirt_model
from .skirt_shape import TEMPLATE_FIT, template_fit

DEFAULT_TAPS = 255  # about 0.5 kHz transition at 48 kHz with Kaiser beta 8 (-80 dB stopband)
KAISER_BETA = 8.0


def highpass_taps(sample_rate: int, keep_below_hz: float, taps: int = DEFAULT_TAPS
                  ) -> np.ndarray:
    """Linear-phase high-pass FIR (taps,) float64 with its -6 dB point at ``keep_below_hz``."""
    if taps % 2 == 0 or taps < 3:
        raise ValueError(f"taps must be odd and >= 3 (a zero-phase FIR), got {taps}")
    nyquist_hz = sample_rate / 2
    if not 0 < keep_below_hz < nyquist_hz:
        raise ValueError(f"keep_below_hz={keep_below_hz} must be between 0 and the Nyquist "
                         f"frequency {nyquist_hz} Hz of sample_rate={sample_rate}")
    return signal.firwin(taps, keep_below_hz, fs=sample_rate, pass_zero=False,
                         window=("kaiser", KAISER_BETA))


class ResidualHighpass(nn.Module):
    """Zero-phase FIR high-pass of (batch, 1, samples) -> (batch, 1, samples), same length.

    The taps are a non-persistent buffer: they are rebuilt from ``keep_below_hz`` and
    ``sample_rate`` (which model cards store as constructor kwargs), never saved as weights,
    so a state dict with and without the lock is the same.
    """

    def __init__(self, sample_rate: int, keep_below_hz: float, taps: int = DEFAULT_TAPS):
        super().__init__()
        self.sample_rate, self.keep_below_hz = int(sample_rate), float(keep_below_hz)
        h = highpass_taps(self.sample_rate, self.keep_below_hz, taps)
        # conv1d is a correlation; the taps are symmetric, so no flip is needed
        self.register_buffer("taps", torch.tensor(h, dtype=torch.float32)[None, None],
                             persistent=False)
        self.padding = taps // 2

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(residual, self.taps, padding=self.padding)


class PassbandLock(nn.Module):
    """``model`` whose output equals its input below ``keep_below_hz``.

    (batch, 1, samples) -> (batch, 1, samples). Keeps the wrapped model's ``card`` (if any)
    with ``keep_below_hz`` added, so processors still find the sample rate.
    """

    def __init__(self, model: nn.Module, sample_rate: int, keep_below_hz: float,
                 taps: int = DEFAULT_TAPS):
        super().__init__()
        self.model = model
        self.highpass = ResidualHighpass(sample_rate, keep_below_hz, taps)
        card = getattr(model, "card", None)
        if isinstance(card, dict):
            self.card = {**card, "keep_below_hz": float(keep_below_hz)}
        self.condition_bands = condition_bands(model)

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (batch, 1, samples), and a condition (batch, bands) if the model takes one."""
        y = self.model(x) if condition is None else self.model(x, condition)
        return x + self.highpass(y - x)


# ---- the lock that follows the detected bandwidth (one cutoff per window) -------------------
CUTOFF_STEP_HZ = 10.0  # cutoffs are rounded to this, so their responses can be cached


@lru_cache(maxsize=512)
def _band_taps(sample_rate: int, low_hz: float, high_hz: float, taps: int) -> np.ndarray:
    """Zero-phase FIR (taps,) passing [low_hz, high_hz): high-pass at low_hz when high_hz is
    the Nyquist frequency, else the difference of two Kaiser low-passes."""
    nyquist_hz = sample_rate / 2
    lowpass_high = (signal.firwin(taps, high_hz, fs=sample_rate, window=("kaiser", KAISER_BETA))
                    if high_hz < nyquist_hz else np.eye(1, taps, taps // 2)[0])
    lowpass_low = signal.firwin(taps, low_hz, fs=sample_rate, window=("kaiser", KAISER_BETA))
    return lowpass_high - lowpass_low


@lru_cache(maxsize=512)
def _band_response(sample_rate: int, low_hz: float, high_hz: float, n_fft: int,
                   taps: int) -> np.ndarray:
    """(n_fft // 2 + 1,) complex128 spectrum of :func:`_band_taps` (read-only, cached)."""
    response = np.fft.rfft(_band_taps(sample_rate, low_hz, high_hz, taps), n_fft)
    response.flags.writeable = False
    return response


def band_responses(sample_rate: int, low_hz: np.ndarray, high_hz: np.ndarray | None,
                   n_fft: int, taps: int = DEFAULT_TAPS) -> np.ndarray:
    """(rows, n_fft // 2 + 1) complex responses of :func:`_band_taps` per row, with the
    taps centred (so a product of spectra is the 'same'-length correlation of conv1d)."""
    nyquist_hz = sample_rate / 2
    step = CUTOFF_STEP_HZ
    if high_hz is None and np.size(low_hz) == 1:  # one window per hop: no array round trips
        low_1 = min(max(round(float(np.ravel(low_hz)[0]) / step) * step, step),
                    nyquist_hz - step)
        return _band_response(int(sample_rate), low_1, nyquist_hz, n_fft, taps)[None]
    low = np.clip(np.round(np.asarray(low_hz, float) / step) * step, step, nyquist_hz - step)
    high = (np.full_like(low, nyquist_hz) if high_hz is None else
            np.clip(np.round(np.asarray(high_hz, float) / step) * step, low + step, nyquist_hz))
    keys = list(zip(low.tolist(), high.tolist()))
    return np.stack([_band_response(int(sample_rate), lo, hi, n_fft, taps) for lo, hi in keys])


def gain_table(gain: float | list) -> tuple[np.ndarray, np.ndarray]:
    """A card's ``extension_gain`` (a number, or ``[[up_to_hz, gain], ...]``) -> (edges,)
    upper edges in Hz and (edges + 1,) gains, the last (1.0) for cutoffs above every edge."""
    table = gain if isinstance(gain, (list, tuple)) else [[float("inf"), gain]]
    return (np.array([float(edge) for edge, _ in table]),
            np.array([float(g) for _, g in table] + [1.0]))


def table_gains(edges_hz: np.ndarray, gains: np.ndarray, cutoff_hz: np.ndarray) -> np.ndarray:
    """(rows,) cutoffs -> (rows,) the gain of each one's bucket in a :func:`gain_table`
    ``(edges_hz, gains)``: the first bucket whose upper edge lies above the cutoff."""
    bucket = np.searchsorted(edges_hz, np.asarray(cutoff_hz, float), side="right")
    return gains[np.minimum(bucket, len(gains) - 1)]


def extend_below_hz(gain: float | list, sample_rate: int) -> float:
    """The lowest cutoff from which the gain table ``gain`` adds nothing up to Nyquist (its top
    buckets have gain 0; a card adds no band above 17 kHz); Nyquist when the top bucket adds.
    A window whose cutoff is at or above it comes out of :class:`DetectedBandLock` as it went
    in, like a full-band one."""
    edges, gains = gain_table(gain)
    lower = np.concatenate([[0.0], edges])
    upper = np.append(edges, np.inf)
    adding = np.flatnonzero((gains > 0) & (lower < sample_rate / 2))
    return min(float(upper[adding[-1]]), sample_rate / 2) if adding.size else 0.0


GATE_FULL_DB, GATE_OFF_DB = 10.0, 20.0  # window-vs-long-term excess: full gain -> no gain
# the roll-off gate's (full gain, no gain) thresholds chosen on the validation captures among
# (-12, -16) ... (-2, -6) dB (seventh session, docs/training.md). Not enabled in the shipped
# card: on the test matrix it cost LSD-HF on most rows and left as many rows with clips worse
ROLLOFF_GATE_DB = (-5.0, -9.0)
# the dark gate's (full gain, no gain) thresholds on the long-term spectrum's octave below the
# cutoff against its whole power (rtbwe.tracker.octave_level_db): a passage that far down
# at its cutoff has a missing band, if any, more than 40 dB under the music (the full-band
# row's pass-through standard); the network's band and the skirt boost only risk making it
# worse there (seventeenth session, docs/training.md)
DARK_GATE_DB = (-40.0, -46.0)
DEFAULT_MAX_ADDED_RATIO = 1.0  # level cap for cards that do not set one (see DetectedBandLock)


class DetectedBandLock:
    """The network changes only the band above each window's extension cutoff
    (:func:`rtbwe.bandwidth.extension_cutoff_hz`): per window,
    ``out = input + g * highpass_cutoff(out - input)`` with the same Kaiser FIR as
    :class:`PassbandLock`; a cutoff at Nyquist (full band, or not yet known), or at and
    above ``extend_below_hz`` (the table's top buckets of gain 0), returns the input
    exactly. Applied between the engine and the overlap-add, so every backend gets it and
    streaming still equals offline.

    The gain ``g`` of each window is a product of factors (:meth:`window_gains`; the gains and
    the write ``input + g * high`` run in the Numba kernels of :mod:`rtbwe.kernels.lock`):

    * the calibrated gain of its cutoff's bucket: ``gain``, a number or a model card's
      ``extension_gain`` table ``[[up_to_hz, gain], ...]`` (the gain of the first bucket
      whose ``up_to_hz`` is above the cutoff), fitted on the validation split
      (``rtbwe-train export --calibrate``);
    * a gate on new content: where the window holds clearly more above the cutoff than the
      long-term spectrum did at the detection that set the cutoff (``excess_db``: the
      difference of their :func:`rtbwe.tracker.band_ratio_db`, from the tracker), the
      input is not band-limited there and is kept: gain 1 up to GATE_FULL_DB, 0 from
      GATE_OFF_DB, linear in dB between;
    * a level cap: the added band's power is at most ``max_added_ratio`` x the window's
      input power in the octave below the cutoff (None: no cap), so near-silence gets no
      hiss and a window the network misjudges cannot get more high band than is plausible;
    * a dark gate (with the gate on new content): where the long-term spectrum's octave
      below the cutoff holds less than about 1e-4 of its power (``level_db``, the tracker's
      fourth contrast value), nothing is added: gain 1 down to DARK_GATE_DB[0], 0 from
      DARK_GATE_DB[1], linear in dB between; it gates the skirt boost too;
    * optionally (``rolloff_gate_db = (full_db, off_db)``, a card's ``rolloff_gate_db``; off
      by default) a roll-off gate: where the long-term spectrum falls steeply into the cutoff
      (:func:`rtbwe.tracker.octave_rolloff_db`, the tracker's third contrast value), the
      input is dark all the way down and its missing band holds almost nothing: gain 1 down
      to ``full_db``, 0 from ``off_db``, linear in dB between.

    With ``skirt_eq`` (a card's ``skirt_eq``), each extended window's input is also boosted
    just above its cutoff where a gentle filter left the band attenuated but present
    (:mod:`rtbwe.skirt`, from the tracker's skirt gain per window), under the same gate on
    new content; the calibrated gains apply to the network's band only. ``skirt_model`` (a
    card's ``skirt_model``) names a learned estimate of that gain (:mod:`rtbwe.skirt_model`),
    or ``"template-fit"`` (:mod:`rtbwe.skirt_shape`), that the tracker then uses in place of
    :func:`rtbwe.skirt.skirt_gain`'s trend rule; an object with that interface's ``gain``
    is used as it is (the matrix's skirt oracle, :mod:`rtbwe.training.skirt_oracle`).
    ``cutoff_scaling`` (a card's ``cutoff_scaling``, :mod:`rtbwe.rescale`) is carried for
    the window path: the network then runs on windows resampled to put their cutoff at its
    ``target_hz``.
    """

    def __init__(self, sample_rate: int, window_samples: int, taps: int = DEFAULT_TAPS,
                 gain: float | list = 1.0, max_added_ratio: float | None = None,
                 gate: bool = True, rolloff_gate_db: tuple[float, float] | None = None,
                 skip_network: bool = True, skirt_eq: bool = False,
                 skirt_model: str | None = None, cutoff_scaling: dict | None = None):
        self.sample_rate, self.window_samples, self.taps = int(sample_rate), window_samples, taps
        # the lock returns a window whose cutoff is at Nyquist as it came in, whatever the
        # network made of it: a batch with no other window need not run the network
        # (rtbwe.streaming.WindowPath); False runs it anyway (a constant cost, for benchmarks)
        self.skip_network = bool(skip_network)
        self.gain_edges_hz, self.gains = gain_table(gain)
        # windows with cutoffs from here up (Nyquist, or the table's top buckets of gain 0)
        # are returned as they came in
        self.extend_below_hz = extend_below_hz(gain, self.sample_rate)
        self.max_added_ratio = None if max_added_ratio is None else float(max_added_ratio)
        self.gate = gate
        self.skirt_eq = bool(skirt_eq)
        # the boost's estimate: the template fit (rtbwe.skirt_shape) or a learned one
        # (rtbwe.skirt_model) by name, else the trend rule; an object with SkirtModel's
        # ``gain`` is used as is (evaluation: rtbwe.training.skirt_oracle)
        self.skirt_estimator = (None if not (self.skirt_eq and skirt_model)
                                else skirt_model if hasattr(skirt_model, "gain")
                                else template_fit() if skirt_model == TEMPLATE_FIT
                                else load_skirt_model(skirt_model))
        self._skirt_cache: dict[bytes, np.ndarray] = {}  # skirt gain -> FIR spectrum
        # carried for rtbwe.streaming.WindowPath, which runs the network through a
        # rtbwe.rescale.CutoffScaler with these settings (the lock itself does not use them)
        self.cutoff_scaling = dict(cutoff_scaling) if cutoff_scaling else None
        self.rolloff_gate_db = None if rolloff_gate_db is None else (
            float(rolloff_gate_db[0]), float(rolloff_gate_db[1]))
        # the linear convolution's length, rounded up to a fast FFT size (1,280 for 1024 + 255
        # taps, not 2,048): 0.94 x apply's time on one row (163 vs 174 us median, interleaved,
        # load 2.6), outputs within 2.4e-7
        self.n_fft = scipy_fft.next_fast_len(window_samples + taps - 1, real=True)
        self.nyquist_hz = sample_rate / 2
        # the tracker's bin powers are of Hann-windowed frames: (W / 2) sum (hann * x)^2
        self._hann_sq = (np.hanning(window_samples + 2)[1:-1] ** 2 * (window_samples / 2))
        self._unused, self._rows = np.empty(0), np.arange(2, dtype=np.int64)
        self.kernels = kernels  # rtbwe.kernels; tests swap in rtbwe.kernels.reference

    def added_band(self, inputs: np.ndarray, outputs: np.ndarray,
                   cutoff_hz: np.ndarray) -> np.ndarray:
        """inputs, outputs (rows, window_samples) float32 -> (rows, window_samples): the
        high-passed residual above each row's cutoff (rows: cutoffs below Nyquist only), in
        the FFT's precision (float32 for float32 input with NumPy 2)."""
        spectrum = np.fft.rfft(outputs - inputs, self.n_fft, axis=1)
        spectrum *= band_responses(self.sample_rate, cutoff_hz, None, self.n_fft, self.taps)
        half = self.taps // 2
        return np.fft.irfft(spectrum, self.n_fft, axis=1)[:, half:half + self.window_samples]

    def bucket_gains(self, cutoff_hz: np.ndarray) -> np.ndarray:
        """(rows,) cutoffs -> (rows,) the gain table's gain for each (its bucket's)."""
        return table_gains(self.gain_edges_hz, self.gains, cutoff_hz)

    @property
    def needs_rolloff(self) -> bool:
        """Whether :meth:`apply` wants the tracker's roll-off (a third contrast array)."""
        return self.gate and self.rolloff_gate_db is not None

    def window_gains(self, cutoff_hz: np.ndarray, added: np.ndarray,
                     excess_db: np.ndarray | None = None,
                     below_power: np.ndarray | None = None,
                     rolloff_db: np.ndarray | None = None,
                     level_db: np.ndarray | None = None) -> np.ndarray:
        """(rows,) float64 gains for rows of :meth:`added_band` (see the class docstring),
        by :func:`rtbwe.kernels.lock_gains` and the dark gate; a factor whose array is None
        is left out."""
        gains = np.empty(len(cutoff_hz))
        self.kernels.lock_gains(np.ascontiguousarray(cutoff_hz, np.float64), added,
                                *self._factors(excess_db, below_power, rolloff_db), gains)
        return gains * self.dark_gates(level_db)

    def dark_gates(self, level_db: np.ndarray | None) -> np.ndarray | float:
        """(rows,) the dark gate's factors from the long-term octave level at each cutoff
        (1.0 without the gate on new content or without levels)."""
        if not self.gate or level_db is None:
            return 1.0
        return ramp(np.asarray(level_db, np.float64), *DARK_GATE_DB)

    def _factors(self, excess_db: np.ndarray | None, below_power: np.ndarray | None,
                 rolloff_db: np.ndarray | None) -> tuple:
        """The arguments of :func:`rtbwe.kernels.lock_gains` between ``added`` and
        ``gains``: an empty array for each factor this lock leaves out."""
        unused = self._unused
        gate = self.gate and excess_db is not None
        rolloff = self.needs_rolloff and rolloff_db is not None
        cap = self.max_added_ratio is not None and below_power is not None
        full_db, off_db = self.rolloff_gate_db or ROLLOFF_GATE_DB
        return (self.gain_edges_hz, self.gains, excess_db if gate else unused, GATE_FULL_DB,
                GATE_OFF_DB, rolloff_db if rolloff else unused, full_db, off_db,
                below_power if cap else unused, self.max_added_ratio or 0.0, self._hann_sq)

    def passes_all(self, rows: int, cutoffs_hz: np.ndarray) -> bool:
        """Whether :meth:`apply` would return all ``rows`` windows as they came in (every
        cutoff at Nyquist: full band, or the bandwidth not yet known; or where the gain
        table adds nothing)."""
        return not (cutoffs_hz[:rows] < self.extend_below_hz).any()

    def apply(self, inputs: np.ndarray, outputs: np.ndarray, rows: int,
              cutoffs_hz: np.ndarray, contrast: tuple[np.ndarray, ...] | None = None,
              skirts: np.ndarray | None = None) -> None:
        """inputs, outputs (>= rows, window_samples) float32; outputs[:rows] changed in place.
        ``contrast``: the tracker's (excess_db, below_power[, rolloff_db or None[,
        level_db]]) per row, for the gates and the cap; ``skirts`` (>= rows, bins): the
        tracker's skirt gain per row (used with ``skirt_eq``)."""
        cutoff = cutoffs_hz[:rows]
        extend = cutoff < self.extend_below_hz
        if extend.all():  # the streaming case: views, no copies
            index, rows_index = slice(0, rows), self._row_numbers(rows)
        else:
            outputs[:rows][~extend] = inputs[:rows][~extend]
            if not extend.any():
                return
            index = rows_index = np.flatnonzero(extend)
        high = self.added_band(inputs[index], outputs[index], cutoff[index])
        factors = ([None if c is None else np.ascontiguousarray(c[:rows][index])
                    for c in contrast] if contrast else [])
        gains = self.window_gains(cutoff[index], high, *factors)
        self.kernels.add_gained(inputs, outputs, high, gains, rows_index)
        if self.skirt_eq and skirts is not None:
            excess = factors[0] if factors and self.gate else None
            self.add_skirt(inputs, outputs, rows_index, skirts[:rows][index], excess,
                           factors[3] if len(factors) > 3 else None)

    def add_skirt(self, inputs: np.ndarray, outputs: np.ndarray, rows_index: np.ndarray,
                  skirts: np.ndarray, excess_db: np.ndarray | None,
                  level_db: np.ndarray | None = None) -> None:
        """``outputs[rows_index[j]] += gate_j * boost_j``: the :mod:`rtbwe.skirt` boost of
        ``inputs[rows_index[j]]`` by its skirt gain ``skirts[j]`` (rows, bins), times the gate
        on new content from ``excess_db[j]`` (None: no gate) and the dark gate from
        ``level_db[j]`` (None: none); rows whose gain is all zero are skipped. inputs,
        outputs (>= rows, window_samples) float32."""
        rows_index = np.asarray(rows_index)
        active = skirts.any(axis=1)
        dark = self.dark_gates(level_db)  # (rows,) factors, or 1.0 without the dark gate
        if np.ndim(dark):
            active &= dark > 0
        if not active.all():
            if not active.any():
                return
            rows_index, skirts = rows_index[active], skirts[active]
            excess_db = None if excess_db is None else excess_db[active]
            dark = dark[active] if np.ndim(dark) else dark
        gates = (np.ones(len(rows_index)) if excess_db is None
                 else ramp(excess_db, GATE_FULL_DB, GATE_OFF_DB)) * dark
        responses = (self._skirt_response(skirts[0])[None] if len(skirts) == 1 else
                     np.stack([self._skirt_response(row) for row in skirts]))
        count = len(rows_index)
        windows = (inputs[:count] if rows_index[-1] == count - 1  # 0, 1, ..., count - 1
                   else inputs[rows_index])
        boost = skirt_boost(windows, responses, self.taps, self.n_fft)
        self.kernels.add_gained(outputs, outputs, boost, gates, rows_index)

    def _skirt_response(self, gain: np.ndarray) -> np.ndarray:
        """(bins,) skirt gain -> its FIR spectrum on this lock's FFT grid, cached (a held
        detection repeats the same gain hop after hop)."""
        key = gain.tobytes()
        response = self._skirt_cache.get(key)
        if response is None:
            if len(self._skirt_cache) >= 64:
                self._skirt_cache.clear()
            # complex64: the inputs' precision (float32 windows give complex64 spectra)
            response = skirt_responses(gain[None], self.n_fft, self.taps)[0].astype(np.complex64)
            self._skirt_cache[key] = response
        return response

    def _row_numbers(self, rows: int) -> np.ndarray:
        """np.arange(rows), int64, cached across hops."""
        if self._rows.shape[0] < rows:
            self._rows = np.arange(rows, dtype=np.int64)
        return self._rows[:rows]


def lock_to_band(x: torch.Tensor, y: torch.Tensor, sample_rate: int, low_hz: np.ndarray,
                 high_hz: np.ndarray | None = None, taps: int = DEFAULT_TAPS) -> torch.Tensor:
    """Training form of :class:`DetectedBandLock`: x, y (batch, 1, samples) ->
    ``x + band(y - x)``, the band ``[low_hz, high_hz)`` per row (high: each target's own
    bandwidth, so the network is never asked to synthesise above what its target holds;
    None = Nyquist). Rows with ``low_hz`` at Nyquist return x. Differentiable in y."""
    n = x.shape[-1]
    n_fft = 1 << int(np.ceil(np.log2(n + taps - 1)))
    low = np.asarray(low_hz, float)
    extend = torch.from_numpy(low < sample_rate / 2).to(x.device)[:, None, None]
    response = torch.from_numpy(band_responses(sample_rate, np.minimum(low, sample_rate / 2 - 20),
                                               high_hz, n_fft, taps)).to(x.device)
    spectrum = torch.fft.rfft(y - x, n_fft) * response[:, None, :].to(torch.complex64)
    half = taps // 2
    band = torch.fft.irfft(spectrum, n_fft)[..., half:half + n]
    return x + torch.where(extend, band, torch.zeros_like(band))
