"""Test-split evaluation: SNR, ΔSNR, LSD, LSD-HF, ViSQOL (and VGG distance) per filter.

The system under test is run through the product path, :class:`rtbwe.BandwidthExtender`
in offline mode (framing, batched windows, overlap-add), so the numbers are what users
get. ``whole=True`` instead runs the network once over each clip (the paper's setting).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rtbwe import filters, metrics

METRIC_NAMES = ("snr", "dsnr", "lsd", "lsd_hf", "visqol", "vgg")


@dataclass
class EvalSettings:
    """What to measure: clip length and count, and which slow metrics to include."""

    clip_seconds: float = 10.0
    clip_offset_seconds: float = 0.0  # where in each file the clip starts
    max_clips: int = 24
    cutoff_hz: float = 6000.0
    sample_rate: int = 48000
    visqol: bool = True
    visqol_clips: int = 8
    vggish_weights: str | None = None
    bands: bool = False            # also the error energy per band (``bands_db``)
    extra_filters: tuple[str, ...] = ()  # more held-out filters, e.g. ("butter-4",)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.clip_offset_seconds) and self.clip_offset_seconds >= 0):
            raise ValueError(f"clip_offset_seconds must be a finite number >= 0, got "
                             f"{self.clip_offset_seconds}")
        self.test_filters()  # a bad extra filter fails here, before any audio is loaded

    def test_filters(self) -> dict[str, filters.FilterSpec]:
        """'seen' and 'unseen', then each extra filter under its own name."""
        extra = {name: filters.parse_spec(name) for name in self.extra_filters}
        return {**filters.TEST_FILTERS, **extra}


def test_clips(files: list[Path], settings: EvalSettings) -> list[np.ndarray]:
    """``clip_seconds`` of each test file from ``clip_offset_seconds`` on (the file's first
    offset + clip seconds, loudness-normalised, then cut), up to ``max_clips`` files; a file
    with less than one second there is left out."""
    from .data import load_audio

    clips = []
    skip = int(round(settings.clip_offset_seconds * settings.sample_rate))
    for path in files[: settings.max_clips]:
        audio = load_audio(path, settings.sample_rate,
                           settings.clip_offset_seconds + settings.clip_seconds)[skip:]
        if len(audio) >= settings.sample_rate:  # at least one second
            clips.append(audio)
    if not clips:
        raise ValueError("no test clip of at least 1 s")
    return clips


def system_runner(model: torch.nn.Module | None, sample_rate: int, whole: bool = False,
                  keep_below_hz: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """(samples,) -> (samples,) for a model; ``None`` is the unprocessed "Input" row.
    ``keep_below_hz`` locks the model's passband (:mod:`rtbwe.passband`)."""
    if model is None:
        return lambda x: x
    if keep_below_hz is not None:
        from rtbwe.passband import PassbandLock

        model = PassbandLock(model, sample_rate, keep_below_hz)
    model = model.eval()
    if whole:  # one network call per clip (a conditioned model gets the clip's spectrum)
        from .trainer import model_runner

        batch_run = model_runner(model, torch.device("cpu"), sample_rate=sample_rate)
        return lambda x: batch_run(x[None])[0]
    from rtbwe.processor import BandwidthExtender

    bwe = BandwidthExtender(model=model, sample_rate=sample_rate)
    return lambda x: bwe.process(x, sample_rate)


def evaluate(run: Callable[[np.ndarray], np.ndarray], clips: list[np.ndarray],
             settings: EvalSettings, progress: Callable[[str], None] | None = None
             ) -> dict[str, dict[str, float]]:
    """Metrics per test filter ('seen', 'unseen', then any extra ones), averaged over clips."""
    out: dict[str, dict[str, float]] = {}
    sr, fc = settings.sample_rate, settings.cutoff_hz
    for name, spec in settings.test_filters().items():
        rows: dict[str, list[float]] = {k: [] for k in METRIC_NAMES}
        band_error, energy = 0.0, 0.0  # pooled over clips: sums of energies, then dB
        for i, ref in enumerate(clips):
            low = filters.apply(ref, sr, fc, spec)
            est = np.asarray(run(low), dtype=np.float32)
            if settings.bands:
                band_error = band_error + metrics.band_error_energy(ref, est, sr)
                energy += float(np.sum(np.asarray(ref, np.float64) ** 2))
            snr_in = metrics.snr_db(ref, low)
            rows["snr"].append(metrics.snr_db(ref, est))
            rows["dsnr"].append(rows["snr"][-1] - snr_in)
            rows["lsd"].append(metrics.lsd(ref, est, sr))
            rows["lsd_hf"].append(metrics.lsd_hf(ref, est, sr, fc))
            if settings.visqol and i < settings.visqol_clips:
                rows["visqol"].append(metrics.visqol(ref, est, sr))
            if settings.vggish_weights:
                rows["vgg"].append(metrics.vggish_distance(ref, est, sr, settings.vggish_weights))
            if progress:
                progress(f"{name} clip {i + 1}/{len(clips)}")
        out[name] = {k: float(np.mean(v)) for k, v in rows.items() if v}
        if settings.bands:  # error energy per band of metrics.BAND_EDGES_HZ, dB re reference
            out[name]["bands_db"] = [float(v) for v in  # type: ignore[assignment]
                                     10 * np.log10(np.maximum(band_error / energy, 1e-30))]
        out[name]["clips"] = len(clips)
        out[name]["filter"] = str(spec)  # type: ignore[assignment]
    return out


def format_band_table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown table of the ``bands_db`` of :func:`evaluate` results (``settings.bands``):
    one row per system and filter."""
    edges = metrics.BAND_EDGES_HZ
    names = [f"{lo / 1000:g}-{hi / 1000:g} kHz" for lo, hi in zip(edges[:-1], edges[1:])]
    lines = ["| system | filter | " + " | ".join(names) + " | total |",
             "|" + "---|" * (len(names) + 3)]
    for system, per_filter in results.items():
        for fname, metrics_row in per_filter.items():
            row = np.asarray(metrics_row["bands_db"])
            total = 10 * np.log10(np.sum(10 ** (row / 10)))
            lines.append(f"| {system} | {fname} | " + " | ".join(f"{v:.1f}" for v in row)
                         + f" | {total:.1f} |")
    return "\n".join(lines)


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per system, SNR/ΔSNR/LSD/LSD-HF/ViSQOL per filter."""
    cols = [c for c in METRIC_NAMES if any(c in r[f] for r in results.values() for f in r)]
    head = "| system | filter | " + " | ".join(c.upper().replace("DSNR", "ΔSNR")
                                              for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for system, per_filter in results.items():
        for fname, row in per_filter.items():
            cells = [f"{row[c]:.3f}" if c in row else "–" for c in cols]
            lines.append(f"| {system} | {fname} ({row.get('filter', '')}) | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines)


def write_csv(results: dict[str, dict[str, dict[str, float]]], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "filter", "spec", *METRIC_NAMES, "clips"])
        for system, per_filter in results.items():
            for fname, row in per_filter.items():
                writer.writerow([system, fname, row.get("filter", ""),
                                 *[f"{row[c]:.4f}" if c in row else "" for c in METRIC_NAMES],
                                 row.get("clips", "")])


def lsd_hf_reduction(results: dict[str, dict[str, float]],
                     baseline: dict[str, dict[str, float]]) -> dict[str, float]:
    """Relative LSD-HF reduction per filter versus the unprocessed input (0.3 = 30 %)."""
    return {f: 1.0 - results[f]["lsd_hf"] / baseline[f]["lsd_hf"] for f in results}
