"""The gain on the band a model adds, fitted on the validation split (never the test split).

A network trained with MSE predicts the missing band's conditional mean, but on inputs unlike
its training pairs it can add more than it knows. With the detected-band lock the output is
linear in the added band ``a = out - x``: ``out_g = x + g * a``. Over all validation clips and
matrix rows, the pooled error ``sum |ref - x - g a|^2`` is smallest at

    g* = sum <ref - x, a> / sum <a, a>          (clipped to [0, 1])

and the pooled SNR gain at ``g*`` is never negative on the data it was fitted on. ``rtbwe-train
export --calibrate`` stores ``g*`` as the card's ``extension_gain``; ``BandwidthExtender``
applies it (:class:`rtbwe.passband.DetectedBandLock`).
"""
from __future__ import annotations

import numpy as np

from .matrix import matrix_rows, usable


def fit_extension_gain(model, clips: list[np.ndarray], sample_rate: int = 48000,
                       progress=None) -> dict:
    """``model`` (a loaded module with a card) on every usable (clip, band-limited row):
    returns ``{"extension_gain": g*, "pairs": n, "rows": {row: g* of that row}}``."""
    from rtbwe import BandwidthExtender

    from .real import own_bandwidth_hz

    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu", num_threads=1)
    bwe.extension_gain = 1.0
    bwe._band_lock = 1.0
    own = [own_bandwidth_hz(c) for c in clips]
    total_cross, total_energy, pairs, per_row = 0.0, 0.0, 0, {}
    for name, degradation in matrix_rows().items():
        if degradation is None:
            continue
        cross = energy = 0.0
        for clip, bw in zip(clips, own):
            if not (np.isfinite(bw) and usable(degradation, bw, sample_rate)):
                continue
            x = degradation.apply(clip, sample_rate)
            added = bwe.process(x, sample_rate).astype(np.float64) - x
            cross += float(np.dot(clip - x, added))
            energy += float(np.dot(added, added))
            pairs += 1
        per_row[name] = round(cross / energy, 4) if energy > 0 else None
        total_cross, total_energy = total_cross + cross, total_energy + energy
        if progress:
            progress(f"calibration {name}: least-squares gain {per_row[name]}")
    gain = float(np.clip(total_cross / total_energy, 0.0, 1.0)) if total_energy > 0 else 1.0
    return {"extension_gain": round(gain, 4), "pairs": pairs, "rows": per_row}
