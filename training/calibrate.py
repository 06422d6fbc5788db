"""The detected-band lock's settings, fitted on the validation split (never the test split).

A network trained with MSE predicts the missing band's conditional mean, but on inputs unlike
its training pairs it can add more than it knows. With the detected-band lock
(:class:`rtbwe.passband.DetectedBandLock`) the output is linear in what each window adds:

    y = x + sum_k  g_k * f_k * OLA_k(a_k)

where ``a_k`` is window k's high-passed residual, ``OLA_k`` its weighted overlap-add share,
``f_k`` the lock's safety factors (the gate on content the detection did not see, and the
level cap ``max_added_ratio``) and ``g_k`` the calibrated gain of the bucket of window k's
cutoff. So one run of the network per (clip, matrix row) is enough (:func:`capture`): for
every candidate cap the per-bucket components ``s_b = sum_{k in b} f_k OLA_k(a_k)`` are
rebuilt from the recorded windows, and the gains are the bounded least-squares solution of

    min_g  sum_pairs |ref - x - sum_b g_b s_b|^2      (0 <= g_b <= MAX_FITTED_GAIN)

whose pooled error is never above the lock's without an added band (g = 0) on the data it
was fitted on. The cap is chosen by the matrix goals on the validation split: fewest rows
made worse (pooled ΔSNR < 0, or more than 5 % of clips below -0.5 dB), then the largest
mean ΔSNR. ``rtbwe-train export --calibrate`` stores ``extension_gain`` and
``max_added_ratio`` in the card, with everything measured under ``calibration``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from rtbwe.passband import DetectedBandLock

from .matrix import matrix_rows, usable

GAIN_EDGES_HZ = (4500.0, 5500.0, 7000.0, 9000.0, 11000.0, 13000.0, 1e9)  # cutoff buckets
MAX_FITTED_GAIN = 3.0
CAP_CANDIDATES = (None, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125)  # max_added_ratio tried
WORSE_DB = -0.5            # a clip below this ΔSNR is "made worse"
WORSE_FRACTION = 0.05      # ... and a row with more such clips than this fails


class _RecordingLock(DetectedBandLock):
    """The lock at gain 1 with no gate and no cap, recording each window's inputs to them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: list[tuple[np.ndarray, ...]] = []

    def apply(self, inputs, outputs, rows, cutoffs_hz, contrast=None) -> None:
        cutoff = cutoffs_hz[:rows].copy()
        extend = cutoff < self.nyquist_hz
        added = np.zeros((rows, self.window_samples), np.float32)
        if extend.any():
            added[extend] = self.added_band(inputs[:rows][extend], outputs[:rows][extend],
                                            cutoff[extend])
        self.records.append((cutoff, contrast[0][:rows].copy(), contrast[1][:rows].copy(),
                             added))
        outputs[:rows] = inputs[:rows] + added


@dataclass
class Capture:
    """One degraded mono clip through the network: per window k (frames,) cutoff_hz,
    excess_db, below_power and (frames, window) added bands; ``error`` = ref - x (samples,)."""
    row: str
    cutoff_hz: np.ndarray
    excess_db: np.ndarray
    below_power: np.ndarray
    added: np.ndarray
    error: np.ndarray


def capture(bwe, clip: np.ndarray, degraded: np.ndarray, row: str) -> Capture:
    """Run ``degraded`` (samples,) through ``bwe`` (a mono BandwidthExtender) recording
    every window's added band (see :class:`_RecordingLock`)."""
    recorder = _RecordingLock(bwe.sample_rate, bwe.window_samples)
    saved, bwe._band_lock = bwe._band_lock, recorder
    try:
        bwe.process(degraded.astype(np.float32), bwe.sample_rate)
    finally:
        bwe._band_lock = saved
    cutoff, excess, below, added = (np.concatenate(part) for part in zip(*recorder.records))
    return Capture(row, cutoff, excess, below, added,
                   clip.astype(np.float64) - degraded.astype(np.float64))


def overlap_add_share(added: np.ndarray, window: np.ndarray, hop_samples: int,
                      num_samples: int) -> np.ndarray:
    """(frames, window) per-window bands -> (num_samples,) their contribution to the output,
    with the processor's geometry (frame k starts at k * hop - (window - hop); weighted by
    ``window``, divided by the summed weights of all frames)."""
    frames, window_samples = added.shape
    padded = (frames - 1) * hop_samples + window_samples
    acc, weights = np.zeros(padded), np.zeros(padded)
    for k in range(frames):
        acc[k * hop_samples:k * hop_samples + window_samples] += window * added[k]
        weights[k * hop_samples:k * hop_samples + window_samples] += window
    context = window_samples - hop_samples
    return acc[context:context + num_samples] / weights[context:context + num_samples]


def _components(c: Capture, lock: DetectedBandLock, window: np.ndarray,
                hop_samples: int) -> np.ndarray:
    """(buckets, samples) per-bucket shares of one capture under ``lock``'s gate and cap."""
    extend = c.cutoff_hz < lock.nyquist_hz
    factor = np.zeros(len(c.cutoff_hz))
    factor[extend] = lock.window_gains(c.cutoff_hz[extend], c.added[extend].astype(np.float64),
                                       c.excess_db[extend], c.below_power[extend])
    bucket = np.minimum(np.searchsorted(GAIN_EDGES_HZ, c.cutoff_hz, side="right"),
                        len(GAIN_EDGES_HZ) - 1)
    out = np.zeros((len(GAIN_EDGES_HZ), c.error.size))
    for b in np.unique(bucket[extend]):
        scaled = c.added * (factor * (bucket == b) * extend)[:, None]
        out[b] = overlap_add_share(scaled, window, hop_samples, c.error.size)
    return out


def fit_lock(model, clips: list[np.ndarray], sample_rate: int = 48000,
             caps: tuple = CAP_CANDIDATES, progress=None) -> dict:
    """Fit ``extension_gain`` (per bucket of GAIN_EDGES_HZ) and choose ``max_added_ratio``
    among ``caps`` for ``model`` on ``clips`` (validation clips, (samples,) each) over every
    usable band-limited matrix row. Returns the card fields and, under ``candidates``, the
    validation matrix (pooled ΔSNR and clips worse per row) of every candidate cap."""
    from rtbwe import BandwidthExtender

    from .real import own_bandwidth_hz

    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu", num_threads=1)
    own = [own_bandwidth_hz(c) for c in clips]
    captures = []
    for name, degradation in matrix_rows().items():
        if degradation is None:
            continue
        for clip, bw in zip(clips, own):
            if np.isfinite(bw) and usable(degradation, bw, sample_rate):
                captures.append(capture(bwe, clip, degradation.apply(clip, sample_rate), name))
        if progress:
            progress(f"calibration: captured {name}")
    candidates = [evaluate_cap(captures, cap, bwe.window, bwe.hop_samples, sample_rate)
                  for cap in caps]
    best = min(candidates, key=lambda r: (r["rows_failing"], -r["mean_dsnr_db"]))
    return {"extension_gain": best["extension_gain"], "max_added_ratio": best["max_added_ratio"],
            "pairs": len(captures), "candidates": candidates}


def evaluate_cap(captures: list[Capture], cap: float | None, window: np.ndarray,
                 hop_samples: int, sample_rate: int = 48000) -> dict:
    """Least-squares gains under one cap, and the validation matrix they give."""
    lock = DetectedBandLock(sample_rate, window.size, max_added_ratio=cap)
    buckets = len(GAIN_EDGES_HZ)
    gram, cross = np.zeros((buckets, buckets)), np.zeros(buckets)
    per_pair = []
    for c in captures:
        s = _components(c, lock, window, hop_samples)
        g, r = s @ s.T, s @ c.error
        gram, cross = gram + g, cross + r
        per_pair.append((c.row, float(c.error @ c.error), r, g))
    # min g'Gg - 2 g'r on the box: with G = L L', the bounded least squares |L'g - L^-1 r|^2
    used = np.diag(gram) > 0
    gains = np.zeros(buckets)
    if used.any():
        g_used = gram[np.ix_(used, used)]
        chol = np.linalg.cholesky(g_used + 1e-12 * np.trace(g_used) * np.eye(used.sum()))
        fit = lsq_linear(chol.T, np.linalg.solve(chol, cross[used]),
                         bounds=(0.0, MAX_FITTED_GAIN))
        gains[used] = fit.x
    total_base = sum(base for _, base, _, _ in per_pair)
    total_error = total_base - 2 * gains @ cross + gains @ gram @ gains
    rows: dict[str, dict] = {}
    for row, base, r, g in per_pair:
        error = base - 2 * gains @ r + gains @ g @ gains
        entry = rows.setdefault(row, {"base": 0.0, "error": 0.0, "worse": 0, "clips": 0})
        entry["base"] += base
        entry["error"] += error
        entry["worse"] += int(10 * np.log10(base / max(error, 1e-30)) < WORSE_DB)
        entry["clips"] += 1
    table = {row: {"dsnr_db": round(10 * np.log10(e["base"] / max(e["error"], 1e-30)), 3),
                   "worse_fraction": round(e["worse"] / e["clips"], 3), "clips": e["clips"]}
             for row, e in rows.items()}
    failing = sum(t["dsnr_db"] < 0 or t["worse_fraction"] > WORSE_FRACTION
                  for t in table.values())
    return {"max_added_ratio": cap,
            "extension_gain": [[edge, round(float(g), 4) if used[b] else 1.0]
                               for b, (edge, g) in enumerate(zip(GAIN_EDGES_HZ, gains))],
            "rows_failing": int(failing),
            "error_without_band": float(total_base), "error_fitted": float(total_error),
            "mean_dsnr_db": round(float(np.mean([t["dsnr_db"] for t in table.values()])), 4),
            "rows": table}
