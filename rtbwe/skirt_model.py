"""A learned skirt estimate: how far a gentle low-pass pushed the band above the bandwidth down.

:mod:`rtbwe.skirt` boosts a gentle filter's skirt by how far the input lies below its own
passband's trend, minus a 10 dB margin: music's own roll-off near the top of its passband is
not the filter's, and an over-boost costs more than an under-boost. The margin gives up the
first 10 dB of every skirt, which is where most of its energy lies. This module replaces the
trend with a small network fitted to that question directly (``rtbwe-train skirt``,
:mod:`rtbwe.training.skirt_fit`): from the tracker's long-term spectrum, relative to the
detected bandwidth ``e``, it predicts the boost in dB at BOOST_POINTS points evenly over
[1, 2] x ``e``, linear in between, 0 elsewhere. It was trained on the training split's
degradations (filters of every training family, Butterworth 2-12, resamplers, MP3, GSM and
none) with the exact error of the boosted input, through the lock's FIR, as its loss: it
learned how far music's own roll-off goes on, and to boost cliffs little. A row is boosted
only where the trend rule's cliff test (:func:`rtbwe.skirt.has_skirt`) sees a skirt: without
that guard one resampled-via-8 kHz test clip in 23 was made worse and the row fell to
-0.17 dB. Since the twentieth session the boost's cliff rule (a fall of more than
BOOST_EDGE_FALL_DB just above a bandwidth under 10 kHz: a resampler's cliff detected a little
under it) guards it too: one validation clip via 8 kHz went from -0.94 to +0.02 dB through
``default-scaled-learned-skirt``, the test rows via 8 kHz from -0.06 / -0.08 to +0.01 / +0.00
dB on the two cards that name it, every other row the same to 1e-4 dB. Measured on the test
split (docs/training.md, twelfth and twentieth sessions): about twice the trend rule's ΔSNR on
the filter rows, but more clips made worse, so only the opt-in cards
``default-learned-skirt`` and ``default-scaled-learned-skirt`` name it.

Inputs, per row: ``L`` = the long-term power in dB smoothed over 5 bins (as the detection),
at FEATURE_POINTS x ``e`` (linear interpolation), minus its mean over ANCHOR_SPAN x ``e``,
clipped to [-80, 20] dB and divided by 20; then ``e`` / 24 kHz. The network: two GELU
layers, then ``max_boost_db x sigmoid``.

Weights are a shipped safetensors file plus a JSON card (``rtbwe/weights/skirt-*.json``),
checked as untrusted input like a model's (:func:`load_skirt_model`): a registered name
only, the card's types, the file's sha256, the tensor names and shapes, finite values.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import numpy as np
from scipy.special import erf

from .bandwidth import FULL_BAND_FRACTION, smooth_db
from .skirt import _grid, has_skirt
from .weights import MAX_CARD_BYTES, WEIGHTS_DIR, ModelLoadingError, read_weights_file

FEATURE_POINTS = np.linspace(0.3, 2.0, 52)  # x the bandwidth: the levels the network sees
ANCHOR_SPAN = (0.6, 0.9)   # levels are relative to their mean over this x the bandwidth
BOOST_POINTS = 24          # boosts (dB) at this many points evenly over [1, 2] x bandwidth
FEATURES = len(FEATURE_POINTS) + 1
SILENT_POWER = 1e-12       # long-term mean power per bin below this: no boost
SKIRT_MODELS = {"skirt-mlp": "skirt-mlp"}  # registered name -> stem in rtbwe/weights
MAX_HIDDEN = 1024


def features(level_db: np.ndarray, bandwidth_hz: np.ndarray, freqs_hz: np.ndarray
             ) -> np.ndarray:
    """(rows, bins) smoothed dB levels and (rows,) finite bandwidths -> (rows, FEATURES)
    float32 network inputs (see the module docstring)."""
    rows = len(level_db)
    x = np.empty((rows, FEATURES), np.float32)
    for i in range(rows):
        edge = float(bandwidth_hz[i])
        lo = int(np.searchsorted(freqs_hz, ANCHOR_SPAN[0] * edge))
        hi = int(np.searchsorted(freqs_hz, ANCHOR_SPAN[1] * edge, side="right"))
        anchor = level_db[i, lo:max(hi, lo + 1)].mean()
        relative = np.interp(FEATURE_POINTS * edge, freqs_hz, level_db[i]) - anchor
        x[i, :-1] = np.clip(relative, -80.0, 20.0) / 20.0
        x[i, -1] = edge / 24000.0
    return x


def boost_on_bins(boost_db: np.ndarray, bandwidth_hz: np.ndarray, freqs_hz: np.ndarray
                  ) -> np.ndarray:
    """(rows, BOOST_POINTS) dB at [1, 2] x bandwidth -> (rows, bins) dB on the rfft grid:
    linear between the points, 0 outside [1, 2] x bandwidth."""
    out = np.zeros((len(boost_db), len(freqs_hz)))
    points = np.linspace(1.0, 2.0, BOOST_POINTS)
    for i, edge in enumerate(np.asarray(bandwidth_hz, np.float64)):
        lo = int(np.searchsorted(freqs_hz, edge))
        hi = int(np.searchsorted(freqs_hz, 2.0 * edge, side="right"))
        out[i, lo:hi] = np.interp(freqs_hz[lo:hi] / edge, points, boost_db[i])
    return out


class SkirtModel:
    """The network of the module docstring, in NumPy (float64). ``tensors``: ``w1`` (hidden,
    FEATURES), ``b1``, ``w2`` (hidden, hidden), ``b2``, ``w3`` (BOOST_POINTS, hidden), ``b3``,
    as torch's ``nn.Linear`` stores them."""

    def __init__(self, tensors: dict[str, np.ndarray], max_boost_db: float, name: str = "",
                 cliff_guard: bool = True):
        self.cliff_guard = bool(cliff_guard)
        self.layers = [(tensors[f"w{k}"].astype(np.float64), tensors[f"b{k}"].astype(np.float64))
                       for k in (1, 2, 3)]
        self.max_boost_db, self.name = float(max_boost_db), name

    def boost_db(self, x: np.ndarray) -> np.ndarray:
        """(rows, FEATURES) -> (rows, BOOST_POINTS) boosts in dB, in [0, max_boost_db]."""
        h = np.asarray(x, np.float64)
        for k, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if k < 2:
                h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # GELU (exact, as torch's)
        return self.max_boost_db / (1.0 + np.exp(-h))

    def gain(self, power: np.ndarray, bandwidth_hz: np.ndarray, sample_rate: int,
             window_samples: int) -> np.ndarray:
        """Long-term powers (rows, window_samples // 2 + 1) and (rows,) detected bandwidths ->
        (rows, bins) float64 amplitude gain minus 1 (0: leave the bin), as
        :func:`rtbwe.skirt.skirt_gain`. Full-band, unknown (NaN) and silent rows get zeros."""
        power = np.atleast_2d(np.asarray(power, dtype=np.float64))
        edge_hz = np.asarray(bandwidth_hz, dtype=np.float64).reshape(-1)
        out = np.zeros(power.shape)
        limited = np.flatnonzero(np.isfinite(edge_hz)
                                 & (edge_hz < FULL_BAND_FRACTION * sample_rate / 2)
                                 & (power.mean(axis=1) > SILENT_POWER))
        if limited.size == 0:
            return out
        level_db = smooth_db(power[limited])
        if self.cliff_guard:  # only rows with a gentle skirt, by the trend rule's cliff tests
            keep = [has_skirt(level, edge_hz[r], sample_rate, window_samples, edge_cliff=True)
                    for level, r in zip(level_db, limited)]
            limited, level_db = limited[keep], level_db[keep]
            if limited.size == 0:
                return out
        freqs_hz = _grid(int(sample_rate), int(window_samples))[0]
        boost = self.boost_db(features(level_db, edge_hz[limited], freqs_hz))
        out[limited] = 10.0 ** (boost_on_bins(boost, edge_hz[limited], freqs_hz) / 20.0) - 1.0
        return out


def _shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    return {"w1": (hidden, FEATURES), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,),
            "w3": (BOOST_POINTS, hidden), "b3": (BOOST_POINTS,)}


@lru_cache(maxsize=4)
def load_skirt_model(name: str) -> SkirtModel:
    """A registered skirt model (``SKIRT_MODELS``), checked before it is built: the card's
    types, the safetensors file's sha256 and header, the tensors' names, shapes and finite
    float32 values. Raises :class:`rtbwe.weights.ModelLoadingError` naming the problem."""
    from safetensors.numpy import load as load_bytes

    if name not in SKIRT_MODELS:
        raise ModelLoadingError(f"unknown skirt model {name!r}; registered: "
                                f"{', '.join(SKIRT_MODELS)}")
    card_path = WEIGHTS_DIR / f"{SKIRT_MODELS[name]}.json"
    try:
        with open(card_path, "rb") as f:
            raw = f.read(MAX_CARD_BYTES + 1)
    except OSError as err:
        raise ModelLoadingError(f"skirt model card missing or unreadable: {card_path} "
                                f"({err})") from None
    try:
        card = json.loads(raw) if len(raw) <= MAX_CARD_BYTES else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        card = None
    hidden, max_boost = (card.get("hidden"), card.get("max_boost_db")) \
        if isinstance(card, dict) else (None, None)
    if not (isinstance(hidden, int) and 1 <= hidden <= MAX_HIDDEN
            and isinstance(max_boost, (int, float)) and 0 < max_boost <= 60
            and card.get("boost_points") == BOOST_POINTS and card.get("features") == FEATURES
            and isinstance(card.get("sha256"), str)):
        raise ModelLoadingError(f"{card_path}: not a skirt model card (needs hidden, "
                                f"max_boost_db in (0, 60], boost_points {BOOST_POINTS}, "
                                f"features {FEATURES} and sha256)")
    weights_path = card_path.with_suffix(".safetensors")
    data, declared = read_weights_file(weights_path)
    if hashlib.sha256(data).hexdigest() != card["sha256"]:
        raise ModelLoadingError(f"{weights_path}: sha256 differs from its card's")
    expected = _shapes(hidden)
    if declared != {k: ("F32", shape) for k, shape in expected.items()}:
        raise ModelLoadingError(f"{weights_path}: tensors {declared} are not the float32 "
                                f"{expected} a skirt model of width {hidden} has")
    tensors = load_bytes(data)
    if not all(np.isfinite(t).all() for t in tensors.values()):
        raise ModelLoadingError(f"{weights_path}: non-finite weights")
    return SkirtModel(tensors, float(max_boost), name)
