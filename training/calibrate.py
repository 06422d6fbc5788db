"""The gain on the band a model adds, fitted on the validation split (never the test split).

A network trained with MSE predicts the missing band's conditional mean, but on inputs unlike
its training pairs it can add more than it knows. With the detected-band lock the output is
linear in the added band ``a = out - x``: ``out_g = x + g * a``. Over all validation clips and
matrix rows, the pooled error ``sum |ref - x - g a|^2`` is smallest at

    g* = sum <ref - x, a> / sum <a, a>          (clipped to [0, MAX_FITTED_GAIN])

and the pooled SNR gain at ``g*`` is never negative on the data it was fitted on. The best gain
depends on the band limit (measured on the validation split: 3-5 below 4.5 kHz, about 1 at
6-11 kHz, 0 at 14 kHz and for codecs), so ``g*`` is fitted per bucket of detected bandwidth.
``rtbwe-train export --calibrate`` stores the table as the card's ``extension_gain``;
``BandwidthExtender`` applies it per window (:class:`rtbwe.passband.DetectedBandLock`).
"""
from __future__ import annotations

import numpy as np

from .matrix import matrix_rows, usable


GAIN_EDGES_HZ = (5000.0, 7000.0, 9500.0, 12500.0, 1e9)  # buckets of detected cutoff
MAX_FITTED_GAIN = 3.0


def fit_extension_gain(model, clips: list[np.ndarray], sample_rate: int = 48000,
                       progress=None) -> dict:
    """``model`` (a module, with or without a card) on every usable (clip, band-limited row),
    with gain 1. Each pair goes to the bucket of its detected bandwidth; per bucket

        g* = clip(sum <ref - x, a> / sum <a, a>, 0, MAX_FITTED_GAIN)

    Returns ``{"extension_gain": [[up_to_hz, g*], ...], "pairs": n, "rows": {row: the
    row's own least-squares gain}, "error_gain_1": ..., "error_fitted": ...}`` (pooled
    squared errors on these pairs: the fitted table is never worse than gain 1 on them)."""
    from rtbwe import BandwidthExtender

    from .real import own_bandwidth_hz

    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu", num_threads=1)
    bwe.extension_gain = bwe._band_lock = 1.0
    own = [own_bandwidth_hz(c) for c in clips]
    buckets = len(GAIN_EDGES_HZ)
    cross, energy, base = np.zeros(buckets), np.zeros(buckets), np.zeros(buckets)
    pairs, per_row = 0, {}
    for name, degradation in matrix_rows().items():
        if degradation is None:
            continue
        row_cross = row_energy = 0.0
        for clip, bw in zip(clips, own):
            if not (np.isfinite(bw) and usable(degradation, bw, sample_rate)):
                continue
            x = degradation.apply(clip, sample_rate)
            added = bwe.process(x, sample_rate).astype(np.float64) - x
            b = int(np.searchsorted(GAIN_EDGES_HZ, bwe.input_bandwidth_hz or sample_rate / 2,
                                    side="right"))
            b = min(b, buckets - 1)
            c, e = float(np.dot(clip - x, added)), float(np.dot(added, added))
            cross[b] += c
            energy[b] += e
            base[b] += float(np.dot(clip - x, clip - x))
            row_cross, row_energy, pairs = row_cross + c, row_energy + e, pairs + 1
        per_row[name] = round(row_cross / row_energy, 4) if row_energy > 0 else None
        if progress:
            progress(f"calibration {name}: the row's least-squares gain {per_row[name]}")
    gains = np.where(energy > 0, np.clip(cross / np.maximum(energy, 1e-30), 0.0,
                                         MAX_FITTED_GAIN), 1.0)

    def error(g: np.ndarray) -> float:
        return float(np.sum(base - 2 * g * cross + g * g * energy))
    return {"extension_gain": [[edge, round(float(g), 4)] for edge, g in
                               zip(GAIN_EDGES_HZ, gains)],
            "pairs": pairs, "rows": per_row, "pairs_per_bucket_energy": energy.tolist(),
            "error_gain_1": error(np.ones(buckets)), "error_fitted": error(gains)}
