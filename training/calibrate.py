"""The detected-band lock's settings, fitted on the validation split (never the test split).

A network trained with MSE predicts the missing band's conditional mean, but on inputs unlike
its training pairs it can add more than it knows. With the detected-band lock
(:class:`rtbwe.passband.DetectedBandLock`) the output is linear in what each window adds:

    y = x + sum_k  g_k * f_k * OLA_k(a_k)

where ``a_k`` is window k's high-passed residual, ``OLA_k`` its weighted overlap-add share,
``f_k`` the lock's safety factors (the gate on content the detection did not see, the
optional roll-off gate on inputs dark all the way to the cutoff, and the level cap
``max_added_ratio``) and ``g_k`` the calibrated gain of the bucket of window k's
cutoff. So one run of the network per (clip, matrix row) is enough (:func:`capture`): the
per-bucket components ``s_b = sum_{k in b} f_k OLA_k(a_k)`` are rebuilt from the recorded
windows, and the least-squares gains are the bounded solution of

    min_g  sum_pairs |ref - x - sum_b g_b s_b|^2      (0 <= g_b <= MAX_FITTED_GAIN)

whose pooled error is never above the lock's without an added band (g = 0) on the data it
was fitted on. On other clips they are not safe: with two folds by clip (24 validation clips,
arunet-small-wide), gains fitted on one half made the other half's Chebyshev-1 6 kHz row
-2.9 dB worse. So the shipped gains are the least-squares ones times a shrink, chosen by that
cross-validation (:func:`choose_shrink`): the best mean row among shrinks whose worst row stays
above SAFE_ROW_DB.

Then a floor (:func:`choose_floor`). Where the network's band does not correlate with the
truth, least squares gives it no gain, and the band stays empty. With an MSE-trained network
that happens in the top buckets, where the missing band is mostly noise-like. ΔSNR cannot see
a small gain there: it costs g^2 |s|^2. The spectral distance can see it: on the ninth
session's validation captures, a gain of 0.2 above 13 kHz took the half-width student's
LSD-HF on the 14 kHz rows from -9/-11 % to -29/-32 %, for 0.001 dB of ΔSNR. So every
bucket below EXTEND_BELOW_HZ gets at least the largest of GAIN_FLOOR_CANDIDATES whose
cross-validated mean and worst rows stay within FLOOR_COST_DB of no floor.

No band is added at cutoffs of EXTEND_BELOW_HZ (17 kHz) and above: gain 0 there, so the lock
returns such windows as they came in and the network need not run (MP3 at 128 kbps and
other near-full-band input). What a band up there can give is inaudible to most listeners,
and what it measured was a loss: on the test matrix a gain of 0.027 there moved the
student's MP3 128 kbps row's LSD-HF from 0 to +6 % (ΔSNR +0.000 either way).

``rtbwe-train export --calibrate`` stores ``extension_gain`` and ``max_added_ratio`` in the
card, with everything measured under ``calibration``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from rtbwe.passband import DEFAULT_MAX_ADDED_RATIO, DetectedBandLock

from .matrix import matrix_rows, usable

GAIN_EDGES_HZ = (4500.0, 5500.0, 7000.0, 9000.0, 11000.0, 13000.0, 17000.0, 1e9)  # buckets
MAX_FITTED_GAIN = 3.0
SHRINK_CANDIDATES = (1.0, 0.7, 0.5, 0.35, 0.25)  # the shipped gains: shrink x least squares
SAFE_ROW_DB = -0.05        # shrinks whose cross-validated worst row is above this qualify
WORSE_DB = -0.5            # a clip below this ΔSNR is "made worse"
GAIN_FLOOR_CANDIDATES = (0.0, 0.1, 0.2, 0.3)  # the least gain of the buckets below ...
EXTEND_BELOW_HZ = 17000.0  # ... this edge (upper edge at most this); gain 0 above it
FLOOR_COST_DB = 0.002      # a floor may cost this much of the cross-validated mean / worst row


class _RecordingLock(DetectedBandLock):
    """The lock at gain 1 with no gate and no cap, recording each window's inputs to them
    (every window: a batch of full-band windows still runs the network and is recorded)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "skip_network": False})
        self.records: list[tuple[np.ndarray, ...]] = []
        self.boosts: list[np.ndarray] = []  # with skirt_eq: each window's skirt boost

    @property
    def needs_rolloff(self) -> bool:  # recorded, so a roll-off gate can be fitted too
        return True

    def apply(self, inputs, outputs, rows, cutoffs_hz, contrast=None, skirts=None) -> None:
        cutoff = cutoffs_hz[:rows].copy()
        extend = cutoff < self.nyquist_hz
        added = np.zeros((rows, self.window_samples), np.float32)
        if extend.any():
            added[extend] = self.added_band(inputs[:rows][extend], outputs[:rows][extend],
                                            cutoff[extend])
        self.records.append((cutoff, *(c[:rows].copy() for c in contrast[:4]), added))
        outputs[:rows] = inputs[:rows] + added
        if self.skirt_eq:  # not calibrated: part of the base the gains are fitted on
            boost = np.zeros_like(added)
            if extend.any() and skirts is not None:
                self.add_skirt(inputs, boost, np.flatnonzero(extend), skirts[:rows][extend],
                               contrast[0][:rows][extend], contrast[3][:rows][extend])
            self.boosts.append(boost)
            outputs[:rows] += boost


@dataclass
class Capture:
    """One degraded mono clip through the network: per window k (frames,) cutoff_hz,
    excess_db, below_power, rolloff_db, level_db (the dark gate's) and (frames, window) added
    bands; ``error`` = ref - x (samples,), where x includes the lock's skirt boost
    (:mod:`rtbwe.skirt`) when on."""
    row: str
    cutoff_hz: np.ndarray
    excess_db: np.ndarray
    below_power: np.ndarray
    rolloff_db: np.ndarray
    level_db: np.ndarray
    added: np.ndarray
    error: np.ndarray


def capture(bwe, clip: np.ndarray, degraded: np.ndarray, row: str) -> Capture:
    """Run ``degraded`` (samples,) through ``bwe`` (a mono BandwidthExtender) recording
    every window's added band (see :class:`_RecordingLock`)."""
    recorder = _RecordingLock(bwe.sample_rate, bwe.window_samples, skirt_eq=bwe.skirt_eq,
                              skirt_model=bwe.skirt_model, cutoff_scaling=bwe.cutoff_scaling)
    saved, bwe._band_lock = bwe._band_lock, recorder
    try:
        bwe.process(degraded.astype(np.float32), bwe.sample_rate)
    finally:
        bwe._band_lock = saved
    cutoff, excess, below, rolloff, level, added = (np.concatenate(part)
                                                    for part in zip(*recorder.records))
    error = clip.astype(np.float64) - degraded.astype(np.float64)
    if recorder.boosts:
        error -= overlap_add_share(np.concatenate(recorder.boosts), bwe.window,
                                   bwe.hop_samples, error.size)
    return Capture(row, cutoff, excess, below, rolloff, level, added, error)


def overlap_add_share(added: np.ndarray, window: np.ndarray, hop_samples: int,
                      num_samples: int) -> np.ndarray:
    """(frames, window) per-window bands -> (num_samples,) their contribution to the output:
    the processor's own overlap-add and normalisation kernels and geometry
    (:func:`rtbwe.streaming.process_offline`; frame k starts at k * hop - (window - hop))."""
    from rtbwe import kernels

    frames, window_samples = added.shape
    padded = (frames - 1) * hop_samples + window_samples
    acc = np.zeros((1, padded), np.float32)
    weight_sum = np.zeros(padded, np.float32)
    kernels.overlap_add(np.ascontiguousarray(added, np.float32), frames,
                        window.astype(np.float32), hop_samples, acc, weight_sum, 0)
    out = np.empty((1, num_samples), np.float32)
    kernels.normalise(acc, weight_sum, window_samples - hop_samples, num_samples, out, 0)
    return out[0].astype(np.float64)


def _components(c: Capture, lock: DetectedBandLock, window: np.ndarray,
                hop_samples: int) -> np.ndarray:
    """(buckets, samples) per-bucket shares of one capture under ``lock``'s gate and cap."""
    extend = c.cutoff_hz < lock.nyquist_hz
    factor = np.zeros(len(c.cutoff_hz))
    factor[extend] = lock.window_gains(c.cutoff_hz[extend], c.added[extend].astype(np.float64),
                                       c.excess_db[extend], c.below_power[extend],
                                       c.rolloff_db[extend], c.level_db[extend])
    bucket = np.minimum(np.searchsorted(GAIN_EDGES_HZ, c.cutoff_hz, side="right"),
                        len(GAIN_EDGES_HZ) - 1)
    out = np.zeros((len(GAIN_EDGES_HZ), c.error.size))
    for b in np.unique(bucket[extend]):
        scaled = c.added * (factor * (bucket == b) * extend)[:, None]
        out[b] = overlap_add_share(scaled, window, hop_samples, c.error.size)
    return out


@dataclass
class PairStats:
    """One (clip, row) pair's quadratic error in the gains: |e|^2 - 2 g.cross + g'Gg."""
    row: str
    clip: int
    base: float          # |ref - x|^2: the error without an added band
    cross: np.ndarray    # (buckets,) <s_b, ref - x>
    gram: np.ndarray     # (buckets, buckets) <s_b, s_b'>

    def error(self, gains: np.ndarray) -> float:
        return float(self.base - 2 * gains @ self.cross + gains @ self.gram @ gains)


def pair_statistics(captures: list[Capture], clip_ids: list[int], lock: DetectedBandLock,
                    window: np.ndarray, hop_samples: int) -> list[PairStats]:
    stats = []
    for c, clip in zip(captures, clip_ids):
        s = _components(c, lock, window, hop_samples)
        stats.append(PairStats(c.row, clip, float(c.error @ c.error), s @ c.error, s @ s.T))
    return stats


def least_squares_gains(stats: list[PairStats]) -> np.ndarray:
    """(buckets,) gains minimising the pooled error, each in [0, MAX_FITTED_GAIN]; a bucket
    no window fell in gets 1. With G = L L', the box-bounded least squares |L'g - L^-1 r|^2."""
    gram = sum(p.gram for p in stats)
    cross = sum(p.cross for p in stats)
    used = np.diag(gram) > 0
    gains = np.ones(len(GAIN_EDGES_HZ))
    if used.any():
        g_used = gram[np.ix_(used, used)]
        chol = np.linalg.cholesky(g_used + 1e-12 * np.trace(g_used) * np.eye(used.sum()))
        gains[used] = lsq_linear(chol.T, np.linalg.solve(chol, cross[used]),
                                 bounds=(0.0, MAX_FITTED_GAIN)).x
    return gains


def matrix_scores(stats: list[PairStats], gains: np.ndarray) -> dict[str, dict]:
    """Per row: pooled ΔSNR (dB), the fraction of clips below WORSE_DB, and the clip count."""
    rows: dict[str, list] = {}
    for p in stats:
        entry = rows.setdefault(p.row, [0.0, 0.0, 0, 0])
        error = p.error(gains)
        entry[0] += p.base
        entry[1] += error
        entry[2] += int(10 * np.log10(p.base / max(error, 1e-30)) < WORSE_DB)
        entry[3] += 1
    return {row: {"dsnr_db": round(10 * np.log10(base / max(error, 1e-30)), 3),
                  "worse_fraction": round(worse / clips, 3), "clips": clips}
            for row, (base, error, worse, clips) in rows.items()}


def floored(gains: np.ndarray, floor: float) -> np.ndarray:
    """(buckets,) gains raised to at least ``floor`` in the buckets below EXTEND_BELOW_HZ,
    0 in those above it."""
    below = np.asarray(GAIN_EDGES_HZ[:len(gains)]) <= EXTEND_BELOW_HZ
    return np.where(below, np.maximum(gains, floor), 0.0)


def cross_validate(stats: list[PairStats], shrinks=SHRINK_CANDIDATES,
                   floor: float = 0.0) -> list[dict]:
    """Two folds by clip (even / odd clip index): gains fitted on one fold, times each
    shrink (then :func:`floored`), scored on the other. Per shrink: the mean over folds of
    each row's ΔSNR, the worst row, the mean row and the largest fraction of clips worse."""
    folds = [[p for p in stats if p.clip % 2 == f] for f in (0, 1)]
    fitted = [least_squares_gains(folds[1 - f]) for f in (0, 1)]
    results = []
    for shrink in shrinks:
        scored = [matrix_scores(folds[f], floored(shrink * fitted[f], floor)) for f in (0, 1)]
        rows = {row: round(float(np.mean([s[row]["dsnr_db"] for s in scored if row in s])), 3)
                for row in set(scored[0]) | set(scored[1])}
        results.append({"shrink": shrink, "floor": floor,
                        "rows_dsnr_db": dict(sorted(rows.items())),
                        "worst_row_db": min(rows.values()),
                        "mean_row_db": round(float(np.mean(list(rows.values()))), 4),
                        "max_worse_fraction": max(r["worse_fraction"] for s in scored
                                                  for r in s.values())})
    return results


def choose_shrink(cross_validated: list[dict]) -> float:
    """The shrink with the best cross-validated mean row among those whose worst row stays
    above SAFE_ROW_DB (never worse first); if none does, the one with the best worst row."""
    safe = [r for r in cross_validated if r["worst_row_db"] >= SAFE_ROW_DB]
    if safe:
        return max(safe, key=lambda r: r["mean_row_db"])["shrink"]
    return max(cross_validated, key=lambda r: r["worst_row_db"])["shrink"]


def choose_floor(stats: list[PairStats], shrink: float,
                 floors=GAIN_FLOOR_CANDIDATES) -> tuple[float, list[dict]]:
    """The largest floor whose cross-validated mean row and worst row (at ``shrink``) are
    each within FLOOR_COST_DB of no floor's; and the cross-validation row of each floor."""
    none = cross_validate(stats, (shrink,), 0.0)[0]
    table = [cross_validate(stats, (shrink,), floor)[0] for floor in floors]
    ok = [0.0] + [r["floor"] for r in table
                  if r["mean_row_db"] >= none["mean_row_db"] - FLOOR_COST_DB
                  and r["worst_row_db"] >= none["worst_row_db"] - FLOOR_COST_DB]
    return max(ok), table


def fit_lock(model, clips: list[np.ndarray], sample_rate: int = 48000,
             max_added_ratio: float | None = DEFAULT_MAX_ADDED_RATIO,
             rolloff_gate_db: tuple[float, float] | None = None, progress=None,
             skirt_eq: bool = False) -> dict:
    """The card's ``extension_gain`` (per bucket of GAIN_EDGES_HZ) for ``model`` on
    ``clips`` (validation clips, (samples,) each) over every usable band-limited matrix row:
    least squares on all clips, times the shrink chosen by two-fold cross-validation
    (:func:`choose_shrink`), raised to the floor chosen the same way (:func:`choose_floor`).
    ``skirt_eq``: the lock boosts gentle filters' skirts (:mod:`rtbwe.skirt`), and the gains
    are fitted on top of that boost. Returns the card fields, the cross-validation tables and
    the validation matrix (in-sample) at the shipped gains."""
    from rtbwe import BandwidthExtender

    from .real import own_bandwidth_hz

    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu", num_threads=1,
                            skirt_boost=bool(skirt_eq))  # capture() records with its skirt_eq
    lock = DetectedBandLock(sample_rate, bwe.window_samples, max_added_ratio=max_added_ratio,
                            rolloff_gate_db=rolloff_gate_db)
    own = [own_bandwidth_hz(c) for c in clips]
    stats = []  # each capture is reduced to its statistics at once (a capture is ~5 MB)
    for name, degradation in matrix_rows().items():
        if degradation is None:
            continue
        for index, (clip, bw) in enumerate(zip(clips, own)):
            if np.isfinite(bw) and usable(degradation, bw, sample_rate):
                one = capture(bwe, clip, degradation.apply(clip, sample_rate), name)
                stats += pair_statistics([one], [index], lock, bwe.window, bwe.hop_samples)
        if progress:
            progress(f"calibration: captured {name}")
    least_squares = least_squares_gains(stats)
    cross_validated = cross_validate(stats)
    shrink = choose_shrink(cross_validated)
    floor, floor_table = choose_floor(stats, shrink)
    gains = floored(shrink * least_squares, floor)
    without = sum(p.base for p in stats)
    return {"extension_gain": [[edge, round(float(g), 4)] for edge, g in
                               zip(GAIN_EDGES_HZ, gains)],
            "max_added_ratio": max_added_ratio, "rolloff_gate_db": rolloff_gate_db,
            "skirt_eq": bool(skirt_eq),
            "shrink": shrink, "gain_floor": floor, "floor_cross_validation": floor_table,
            "least_squares_gain": [round(float(g), 4) for g in least_squares],
            "pairs": len(stats), "cross_validation": cross_validated,
            "validation_rows": matrix_scores(stats, gains),
            "error_without_band": without,
            "error_fitted": float(sum(p.error(gains) for p in stats))}
