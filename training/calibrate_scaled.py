"""The scaled band's gains (:mod:`rtbwe.rescale`), fitted on the validation split.

A card with ``cutoff_scaling`` runs a network trained at one cutoff on windows resampled to
put their cutoff there, and adds its change at ``gain``. The thirteenth and fourteenth
sessions shipped gain 1 for every cutoff; the lock's own gains
(:mod:`training.calibrate`) are fitted on top of the engine's band, not this one. Per (clip,
matrix row) pair the output is, to first order, linear in the scaled band's gain per bucket
of the cutoff:

    y(g) = y(0) + sum_b g_b s_b,        s_b = y(e_b) - y(0)

(``e_b``: gain 1 in bucket ``b``, 0 elsewhere; the lock's level cap makes it only nearly
linear: the shipped table is checked through the processor afterwards). So one run at gain
0, and one per bucket the pair's scaled windows fell in, give each pair's quadratic error in
the gains (:class:`training.calibrate.PairStats`), and the same bounded least squares, two
folds by clip and shrink rule as the lock's gains choose the table
(:func:`training.calibrate.least_squares_gains`, :func:`~training.calibrate.cross_validate`,
:func:`~training.calibrate.choose_shrink`). A bucket with scaled windows in fewer than
MIN_BUCKET_PAIRS pairs keeps gain 1: on the fifteenth session's 21 validation clips the
9-11 kHz bucket (a few Chebyshev-1 8 kHz clips) fitted 2.9 and cost the 11 kHz row in-sample.

``rtbwe-train calibrate-scaled CARD OUT --data corpus/v2 corpus/real`` writes the card with the
table under ``cutoff_scaling.gain`` and what was measured under ``scaled_calibration``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from pathlib import Path

import numpy as np

from rtbwe import rescale

from .calibrate import (GAIN_EDGES_HZ, PairStats, choose_shrink, cross_validate,
                        least_squares_gains, matrix_scores)
from .matrix import matrix_rows, usable


MIN_BUCKET_PAIRS = 10  # a bucket fewer pairs scaled windows in keeps gain 1 (not fitted)


@contextlib.contextmanager
def recording_scaled_cutoffs():
    """Within the block, every :meth:`rtbwe.rescale.CutoffScaler.select` appends the
    cutoffs it chose to scale (one per channel at each bandwidth detection, held until the
    next) to the yielded list (a class-level wrapper, removed on exit: the processor builds
    its scaler inside each call)."""
    cutoffs: list[np.ndarray] = []
    select = rescale.CutoffScaler.select

    def recording(self, rows, cutoffs_hz, power, extend_below_hz):
        chosen = select(self, rows, cutoffs_hz, power, extend_below_hz)
        cutoffs.append(np.asarray(cutoffs_hz[:rows], np.float64)[chosen])
        return chosen

    rescale.CutoffScaler.select = recording
    try:
        yield cutoffs
    finally:
        rescale.CutoffScaler.select = select


def _extender(model, card: dict, gains: np.ndarray):
    """A mono BandwidthExtender of ``model`` whose scaled band has ``gains`` per bucket."""
    from rtbwe import BandwidthExtender

    table = [[edge, float(g)] for edge, g in zip(GAIN_EDGES_HZ, gains)]
    model.card = {**card, "cutoff_scaling": {**card["cutoff_scaling"], "gain": table}}
    return BandwidthExtender(model, device="cpu", num_threads=1)


def scaled_pair_statistics(model, clips: list[np.ndarray], sample_rate: int = 48000,
                           progress=None) -> list[PairStats]:
    """One :class:`PairStats` per usable (clip, band-limited matrix row) pair; ``model``: a
    loaded card with ``cutoff_scaling`` (its ``card`` is swapped while measuring, then
    restored)."""
    from .real import own_bandwidth_hz

    card = dict(model.card)
    buckets = len(GAIN_EDGES_HZ)
    try:
        zero = _extender(model, card, np.zeros(buckets))
        units = [_extender(model, card, np.eye(buckets)[b]) for b in range(buckets)]
    finally:
        model.card = card
    own = [own_bandwidth_hz(c) for c in clips]
    stats = []
    for name, degradation in matrix_rows().items():
        if degradation is None:
            continue
        for index, (clip, bw) in enumerate(zip(clips, own)):
            if not (np.isfinite(bw) and usable(degradation, bw, sample_rate)):
                continue
            x = degradation.apply(clip, sample_rate).astype(np.float32)
            with recording_scaled_cutoffs() as scaled:
                y0 = zero.process(x, sample_rate).astype(np.float64)
            cutoff = np.concatenate(scaled) if scaled else np.zeros(0)
            used = np.unique(np.searchsorted(GAIN_EDGES_HZ, cutoff, side="right"))
            error = clip.astype(np.float64) - y0
            components = np.zeros((buckets, error.size))
            for b in used[used < buckets]:
                components[b] = units[b].process(x, sample_rate) - y0
            stats.append(PairStats(name, index, float(error @ error), components @ error,
                                   components @ components.T))
        if progress:
            progress(f"scaled calibration: captured {name}")
    return stats


def fit_scaled_gains(model, clips: list[np.ndarray], sample_rate: int = 48000,
                     progress=None) -> dict:
    """The scaled band's gain table for ``model`` (a card with ``cutoff_scaling``) on
    ``clips`` (validation clips, (samples,) each): least squares times the shrink chosen by
    two-fold cross-validation (which scores least squares x shrink in every bucket);
    buckets fewer than MIN_BUCKET_PAIRS pairs used keep 1. Returns ``gain`` (the table)
    and what was measured."""
    if len(clips) < 2:
        raise ValueError(f"the scaled band's calibration cross-validates over two folds of "
                         f"clips: it needs at least 2 validation clips, got {len(clips)}")
    stats = scaled_pair_statistics(model, clips, sample_rate, progress)
    pairs_per_bucket = np.sum([np.diag(p.gram) > 0 for p in stats], axis=0)
    used = pairs_per_bucket >= MIN_BUCKET_PAIRS
    least_squares = least_squares_gains(stats)
    cross_validated = cross_validate(stats)
    shrink = choose_shrink(cross_validated)
    gains = np.where(used, shrink * least_squares, 1.0)
    unit = matrix_scores(stats, np.ones(len(GAIN_EDGES_HZ)))
    return {"gain": [[edge, round(float(g), 4)] for edge, g in zip(GAIN_EDGES_HZ, gains)],
            "least_squares_gain": [round(float(g), 4) for g in least_squares],
            "pairs_per_bucket": [int(n) for n in pairs_per_bucket], "shrink": shrink,
            "min_bucket_pairs": MIN_BUCKET_PAIRS, "pairs": len(stats),
            "cross_validation": cross_validated,
            "validation_rows": matrix_scores(stats, gains),
            "validation_rows_at_gain_1": unit}


def cmd_calibrate_scaled(args: argparse.Namespace) -> int:
    """Write CARD's copy at OUT (a .json path) with its scaled band's gains fitted."""
    from rtbwe.card_lock import cutoff_scaling
    from rtbwe.weights import load_model, resolve

    from .cli import _split_clips

    out = Path(args.out)
    if out.suffix != ".json":
        raise SystemExit(f"OUT must be a .json card path, got {out}")
    if out.exists() and not args.force:
        raise SystemExit(f"{out} exists; pass --force to replace it")
    model = load_model(args.card)
    card = {k: v for k, v in model.card.items() if not k.startswith("_")}
    if cutoff_scaling(card.get("cutoff_scaling")) is None:
        raise SystemExit(f"{args.card}: its card has no valid cutoff_scaling to calibrate")
    clips = _split_clips(args.data, "validation", args.clip_seconds, args.clips)
    try:
        fit = fit_scaled_gains(model, clips, progress=lambda m: print(m, flush=True))
    except ValueError as error:
        raise SystemExit(f"{args.data}: {error}") from None
    card["cutoff_scaling"] = {**card["cutoff_scaling"], "gain": fit["gain"]}
    card["scaled_calibration"] = {**fit, "data": list(args.data), "split": "validation",
                                  "clips": len(clips), "clip_seconds": args.clip_seconds}
    card_path = resolve(args.card)
    weights = card_path.with_name(card.get("weights_file", card_path.stem + ".safetensors"))
    card["weights_file"] = weights.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out.parent / weights.name).exists():
        shutil.copyfile(weights, out.parent / weights.name)
    partial = out.with_suffix(".json.partial")
    partial.write_text(json.dumps(card, indent=1) + "\n")
    partial.replace(out)
    chosen = next(c for c in fit["cross_validation"] if c["shrink"] == fit["shrink"])
    print(f"scaled gains {fit['gain'][:5]} (least squares x {fit['shrink']}) from "
          f"{fit['pairs']} validation pairs; cross-validated worst row "
          f"{chosen['worst_row_db']:+.2f} dB, mean row {chosen['mean_row_db']:+.3f} dB; "
          f"wrote {out}")
    return 0


def register(sub) -> None:
    c = sub.add_parser("calibrate-scaled", help="fit a cutoff-scaling card's scaled band gains "
                       "per bucket of the cutoff on the validation split")
    c.add_argument("card", help="a card with cutoff_scaling (name or .json path)")
    c.add_argument("out", help="the calibrated card's .json path (its weights file is copied "
                   "beside it when missing)")
    c.add_argument("--data", nargs="+", required=True, metavar="DATA",
                   help="datasets whose validation split is used")
    c.add_argument("--clips", type=int, default=12, help="most validation clips per dataset")
    c.add_argument("--clip-seconds", type=float, default=6.0,
                   help="seconds from the start of each clip (default 6)")
    c.add_argument("--force", action="store_true", help="replace OUT if it exists")
    c.set_defaults(func=cmd_calibrate_scaled)
