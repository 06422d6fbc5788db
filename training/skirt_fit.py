"""Fit the learned skirt estimate (:mod:`rtbwe.skirt_model`): ``rtbwe-train skirt``.

What it learns: for an input whose long-term spectrum the tracker holds, how many dB to boost
each point of [1, 2] x the detected bandwidth so that the boosted input is closest to the
clean one. The loss is exact and needs no network run: per (clip, degradation), the
long-term cross-spectra of clean ``C`` and degraded ``X`` STFT frames (Hann, the processor's
1024 / 768 geometry) give, for any real gain ``g`` per bin,

    error(g) = sum_bins  Pcc - 2 g Re(Pcx) + g^2 Pxx          (per frame, averaged)

and an example's loss is ``error(g) / error(1)``: below 1 where the boost helps, above where
it hurts (an over-boost, or a boosted cliff whose band is aliasing, not the signal), so the
network learns when not to boost too. Full-band examples (nothing removed) are in the mix
with ``error(1) = 0``; their denominator is 1e-4 of the clip's energy (a boost is measured
against a 40 dB bound).

Data: training-split segments of 6 s (up to five per file) of every dataset given, each with
four degradations drawn as the network's training draws them (:func:`rtbwe.training.degrade.draw`:
filters of the training families at 3-16 kHz, resamplers, MP3, GSM), one Butterworth of order
2-12 (a gentle analogue-style roll-off; the training families hold none as gentle) and none.
Features come from the whole segment's long-term spectrum, its first 2 s or its last 4 s
(drawn per batch: the tracker's 4 s average is what streaming sees), the loss from the whole
segment. The best state on the validation split is kept; the test split is never read.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from rtbwe.bandwidth import FULL_BAND_FRACTION, smooth_db, detect_bandwidth_hz
from rtbwe.filters import FilterSpec
from rtbwe.passband import DEFAULT_TAPS
from rtbwe.skirt import skirt_responses
from rtbwe.skirt_model import BOOST_POINTS, FEATURES, features

from . import degrade
from .data import dataset_files, load_audio
from .real import own_bandwidth_hz

SAMPLE_RATE, WINDOW, HOP = 48000, 1024, 768
SEGMENT_S, SEGMENTS_PER_FILE, DRAWS = 6.0, 5, 4
BUTTER_ORDERS = (2, 3, 4, 5, 6, 8, 10, 12)
SPANS = ("", "_head", "_tail")  # feature spectra: whole segment, first 2 s, last 4 s


def _stft(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::HOP]
    return np.fft.rfft(frames * np.hanning(WINDOW + 2)[1:-1], axis=1)


def examples(roots: list[str], split: str, seed: int, progress=print) -> dict[str, np.ndarray]:
    """Per (segment, degradation): long-term ``pxx`` (and of its head and tail), ``pcc``,
    ``pcx`` (bins,), the detected bandwidth of each feature spectrum, and the row's name."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("pcc", "pcx", "name", *(
        p + s for p in ("pxx", "bw") for s in SPANS))}
    head = int(2 * SAMPLE_RATE / HOP)
    segment = int(SEGMENT_S * SAMPLE_RATE)
    for root in roots:
        for path in dataset_files(root)[split]:
            audio = load_audio(path, SAMPLE_RATE, SEGMENT_S * SEGMENTS_PER_FILE)
            for start in range(0, max(len(audio) - segment + 1, 1), segment):
                clean = audio[start:start + segment]
                if len(clean) < 2 * SAMPLE_RATE or np.mean(clean ** 2) < 1e-8:
                    continue
                top = 0.95 * own_bandwidth_hz(clean)
                if not np.isfinite(top):
                    continue
                cases = [degrade.draw(rng, top) for _ in range(DRAWS)] + [None]
                if top > degrade.MIN_CUTOFF_HZ:
                    cutoff = np.exp(rng.uniform(np.log(degrade.MIN_CUTOFF_HZ),
                                                np.log(min(degrade.MAX_CUTOFF_HZ, top))))
                    cases.append(degrade.Degradation(
                        "filter", FilterSpec("butter", int(rng.choice(BUTTER_ORDERS))),
                        float(round(cutoff))))
                spectrum = _stft(clean)
                for case in cases:
                    x = clean if case is None else case.apply(clean, SAMPLE_RATE)
                    y = _stft(x)
                    out["pcc"].append(np.mean(np.abs(spectrum) ** 2, 0))
                    out["pcx"].append(np.mean((spectrum * y.conj()).real, 0))
                    out["name"].append("none" if case is None else str(case))
                    for suffix, part in zip(SPANS, (y, y[:head], y[-2 * head:])):
                        pxx = np.mean(np.abs(part) ** 2, 0)
                        out["pxx" + suffix].append(pxx)
                        out["bw" + suffix].append(
                            float(detect_bandwidth_hz(pxx[None], SAMPLE_RATE, WINDOW)[0]))
        progress(f"{root} {split}: {len(out['name'])} examples")
    return {k: np.array(v) for k, v in out.items()}


def _inputs(pxx: np.ndarray, bandwidth_hz: np.ndarray):
    """Network inputs (rows, FEATURES), each bin's position among the boost points (-1:
    outside), and which rows are band-limited, as torch tensors."""
    import torch

    freqs = np.fft.rfftfreq(WINDOW, 1.0 / SAMPLE_RATE)
    limited = np.isfinite(bandwidth_hz) & (bandwidth_hz < FULL_BAND_FRACTION * SAMPLE_RATE / 2)
    x = np.zeros((len(pxx), FEATURES), np.float32)
    if limited.any():
        x[limited] = features(smooth_db(pxx[limited]), bandwidth_hz[limited], freqs)
    edge = np.where(limited, bandwidth_hz, 1.0)[:, None]
    position = np.where(limited[:, None], (freqs[None] / edge - 1.0) * (BOOST_POINTS - 1), -1.0)
    return torch.tensor(x), torch.tensor(position, dtype=torch.float32), torch.tensor(limited)


def smoothing_matrix(taps: int = DEFAULT_TAPS) -> np.ndarray:
    """(bins, bins) ``S`` such that ``gain @ S`` is what the lock's zero-phase FIR
    (:func:`rtbwe.skirt.skirt_responses`) makes of per-bin gains minus 1 (rows, bins), at the
    window's bins. A boost stepping up at a cliff leaks below it through the FIR: fitted
    without ``S``, the resampled-via-8 kHz validation row went from +0.03 dB to -2.1 dB."""
    bins = WINDOW // 2 + 1
    response = skirt_responses(np.eye(bins), WINDOW, taps)  # taps centred at taps // 2
    return (response * np.exp(2j * np.pi * np.arange(bins) * (taps // 2) / WINDOW)).real


SMOOTHING_REACH = 16  # bins: the FIR's smoothing is banded (further entries < 5e-4 of the diagonal)


def banded(matrix: np.ndarray, reach: int = SMOOTHING_REACH) -> np.ndarray:
    """(bins, bins) ``S`` -> (bins, 2 reach + 1) ``B[k, o + reach] = S[k + o, k]`` (0 outside):
    the weight of bin ``k + o`` in output bin ``k``."""
    bins = len(matrix)
    out = np.zeros((bins, 2 * reach + 1))
    for o in range(-reach, reach + 1):
        k = np.arange(max(0, -o), min(bins, bins - o))
        out[k, o + reach] = matrix[k + o, k]
    return out


class Fitter:
    """The network of :mod:`rtbwe.skirt_model` in torch, and its exact loss."""

    def __init__(self, hidden: int, max_boost_db: float, seed: int):
        import torch

        torch.manual_seed(seed)
        self.smoothing = torch.tensor(banded(smoothing_matrix()))
        self.max_boost_db = max_boost_db
        self.net = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
            torch.nn.GELU(), torch.nn.Linear(hidden, BOOST_POINTS))
        with torch.no_grad():  # start near a 3.5 dB boost everywhere
            self.net[-1].bias -= 2.0

    def gains(self, x, position, limited):
        """(rows, bins) float64 amplitude gains, as the lock's FIR applies them."""
        import torch

        boost = self.max_boost_db * torch.sigmoid(self.net(x)) * limited[:, None]
        inside = (position >= 0) & (position <= BOOST_POINTS - 1)
        p = position.clamp(0, BOOST_POINTS - 1)
        j = p.floor().long().clamp(max=BOOST_POINTS - 2)
        t = p - j
        on_bins = boost.gather(1, j) * (1 - t) + boost.gather(1, j + 1) * t
        per_bin = 10 ** (torch.where(inside, on_bins, torch.zeros_like(on_bins)).double() / 20)
        neighbours = torch.nn.functional.pad(per_bin - 1, (SMOOTHING_REACH, SMOOTHING_REACH))
        return 1 + (neighbours.unfold(1, 2 * SMOOTHING_REACH + 1, 1) * self.smoothing).sum(-1)

    @staticmethod
    def ratios(gains, target: dict):
        """Per example: error with the boost over error without (see the module docstring)."""
        energy = target["pcc"].sum(1)
        boosted = (target["pcc"] - 2 * gains * target["pcx"] + gains ** 2 * target["pxx"]).sum(1)
        plain = (target["pcc"] - 2 * target["pcx"] + target["pxx"]).sum(1)
        return ((boosted.clamp_min(0) + 1e-9 * energy)
                / (plain.clamp_min(0) + 1e-4 * energy))


WORSE_RATIO = 10 ** 0.05  # an example made worse by more than 0.5 dB


def fit(train: dict, validation: dict, hidden: int = 64, max_boost_db: float = 30.0,
        steps: int = 8000, batch: int = 512, seed: int = 0, worse_penalty: float = 0.0,
        progress=print) -> tuple["Fitter", float]:
    """Adam with a cosine schedule on mean ratio, plus ``worse_penalty`` x the mean excess of
    ratios above WORSE_RATIO (examples made worse by more than 0.5 dB); the state with the
    best validation score (checked every 250 steps) is kept. Returns the fitter and it."""
    import torch

    def target(d):
        return {k: torch.tensor(d[k], dtype=torch.float64) for k in ("pcc", "pcx", "pxx")}

    fitter = Fitter(hidden, max_boost_db, seed)
    train_inputs = [_inputs(train["pxx" + s], train["bw" + s]) for s in SPANS]
    train_target, val_target = target(train), target(validation)
    val_inputs = _inputs(validation["pxx"], validation["bw"])
    optimizer = torch.optim.AdamW(fitter.net.parameters(), 1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, count = float("inf"), None, len(train["pcc"])
    for step in range(steps + 1):
        rows = torch.randint(0, count, (batch,), generator=generator)
        span = int(torch.randint(0, len(SPANS), (), generator=generator))
        gains = fitter.gains(*(a[rows] for a in train_inputs[span]))
        ratios = fitter.ratios(gains, {k: v[rows] for k, v in train_target.items()})
        loss = (ratios + worse_penalty * torch.relu(ratios - WORSE_RATIO)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fitter.net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0:
            with torch.no_grad():
                ratios = fitter.ratios(fitter.gains(*val_inputs), val_target)
                score = float((ratios + worse_penalty * torch.relu(ratios - WORSE_RATIO)).mean())
            if score < best:
                best, best_state = score, copy.deepcopy(fitter.net.state_dict())
            if step % 1000 == 0:
                progress(f"step {step}: train {loss.item():.4f}, validation {score:.4f}")
    fitter.net.load_state_dict(best_state)
    return fitter, best


def save(fitter: Fitter, stem: str | Path, card: dict) -> Path:
    """``stem.safetensors`` (float32 ``w1 b1 w2 b2 w3 b3``) and ``stem.json``."""
    from safetensors.numpy import save_file

    stem = Path(stem)
    linear = [m for m in fitter.net if hasattr(m, "weight")]
    tensors = {}
    for k, layer in enumerate(linear, start=1):
        tensors[f"w{k}"] = layer.weight.detach().numpy().astype(np.float32)
        tensors[f"b{k}"] = layer.bias.detach().numpy().astype(np.float32)
    weights = stem.with_suffix(".safetensors")
    save_file(tensors, str(weights))
    card = {**card, "hidden": int(linear[0].weight.shape[0]), "features": FEATURES,
            "boost_points": BOOST_POINTS, "max_boost_db": fitter.max_boost_db,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    stem.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return weights


def cmd_skirt(args) -> int:
    """``rtbwe-train skirt STEM --data A B``: examples from the datasets' training and
    validation splits, the fit, and STEM.safetensors / STEM.json."""
    import time

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cache = Path(args.examples) if args.examples else None
    splits = {}
    for offset, split in enumerate(("train", "validation")):
        path = cache / f"{split}.npz" if cache else None
        if path is not None and path.exists():
            splits[split] = dict(np.load(path))
        else:
            splits[split] = examples(args.data, split, args.seed + offset)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, **splits[split])
    train, validation = splits["train"], splits["validation"]
    fitter, score = fit(train, validation, args.hidden, args.max_boost_db, args.steps,
                        seed=args.seed, worse_penalty=args.worse_penalty)
    card = {"kind": "skirt estimate (rtbwe.skirt_model)", "data": args.data,
            "train_examples": len(train["name"]), "validation_examples": len(validation["name"]),
            "steps": args.steps, "seed": args.seed, "worse_penalty": args.worse_penalty,
            "validation_mean_error_ratio": round(score, 4),
            "degradations": {"draws_per_segment": DRAWS, "draw": "rtbwe.training.degrade.draw",
                             "butterworth_orders": list(BUTTER_ORDERS), "none": True},
            "seconds": round(time.perf_counter() - start)}
    path = save(fitter, args.stem, card)
    print(f"{path}: validation mean error ratio {score:.4f} (boosted over plain input), "
          f"{card['seconds']} s")
    return 0


def register(sub) -> None:
    s = sub.add_parser("skirt", help="fit the learned skirt estimate (rtbwe/skirt_model.py)")
    s.add_argument("stem", help="output path without suffix, e.g. rtbwe/weights/skirt-mlp")
    s.add_argument("--data", nargs="+", required=True, help="datasets (their train and "
                   "validation splits; the test split is not read)")
    s.add_argument("--steps", type=int, default=8000, help="Adam steps (default 8000)")
    s.add_argument("--hidden", type=int, default=64, help="units per hidden layer (default 64)")
    s.add_argument("--max-boost-db", type=float, default=30.0,
                   help="the largest boost the network can give, in dB (default 30)")
    s.add_argument("--seed", type=int, default=0,
                   help="the degradations drawn and the network's initial weights")
    s.add_argument("--worse-penalty", type=float, default=0.0,
                   help="weight on examples made worse by more than 0.5 dB (default 0)")
    s.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    s.add_argument("--examples", help="folder caching the examples (train.npz, "
                   "validation.npz): loaded when present, else built and saved")
    s.set_defaults(func=cmd_skirt)
