"""The degradation matrix: does a model help, and never hurt, whatever the input's bandwidth?

``rtbwe-train eval MODEL --matrix`` runs every row below on the test split through the
streaming ``BandwidthExtender`` path users get (its offline form, which equals streaming
delayed by the latency), and reports per row:

* pooled ΔSNR: output SNR minus input SNR, each pooled over all clips (total reference
  energy over total error energy); the full-band row reports the output's SNR against its
  input instead (the input is the reference there);
* worse: the fraction of clips whose own ΔSNR is below -0.5 dB (full band: whose output is
  less than 40 dB from its input);
* only clips that hold what a row removes count: a clip's own bandwidth (measured on the
  clean clip) must reach 1.05 x the row's band limit, or 0.8 x Nyquist for the full-band row
  (lossy soundtracks stop at 11-18 kHz; a row that cuts above that changes nothing);
* LSD, and LSD-HF above each clip's detected bandwidth (the input's, from the processor).

Rows: full band; Butterworth 6 and Chebyshev-1 6 at 3.5, 4, 6, 8, 11 and 14 kHz; resampled
via 8, 16 and 22.05 kHz (soxr HQ); MP3 files at 32, 64 and 128 kbps (LAME CBR, through
pedalboard); GSM full rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rtbwe import filters, metrics

from rtbwe.bandwidth import FULL_BAND_FRACTION

from .degrade import Degradation

CUTOFFS_HZ = (3500, 4000, 6000, 8000, 11000, 14000)


def matrix_rows() -> dict[str, Degradation | None]:
    rows: dict[str, Degradation | None] = {"full band": None}
    for family in ("butter", "cheby1"):
        for cutoff in CUTOFFS_HZ:
            rows[f"{family}-6 {cutoff / 1000:g} kHz"] = Degradation(
                "filter", filters.FilterSpec(family, 6), float(cutoff))
    for rate in (8000, 16000, 22050):
        rows[f"resampled via {rate / 1000:g} kHz"] = Degradation(
            "resample", rate_hz=rate, resampler="soxr-HQ")
    for kbps in (32, 64, 128):
        rows[f"mp3 {kbps} kbps"] = Degradation("mp3-cbr", bitrate_kbps=kbps)
    rows["gsm"] = Degradation("gsm")
    return rows


# the validation subset the trainer scores "wide" models on (one value: the mean ΔSNR)
VALIDATION_ROWS = ("full band", "butter-6 4 kHz", "cheby1-6 6 kHz", "butter-6 8 kHz",
                   "cheby1-6 11 kHz", "resampled via 16 kHz", "mp3 64 kbps")


@dataclass
class RowResult:
    name: str
    snr_in_db: float
    snr_out_db: float
    dsnr_db: float
    worse_fraction: float
    lsd_in: float
    lsd_out: float
    lsd_hf_in: float
    lsd_hf_out: float
    bandwidth_hz: float
    clips: int = 0
    # LSD-HF from the detected cutoff up to each clip's own bandwidth only (a lossy reference
    # holds nothing above its encoder's low-pass, so a band added there counts as error in
    # lsd_hf_*, though no full-band original would lack it); NaN on the full-band row
    lsd_own_in: float = float("nan")
    lsd_own_out: float = float("nan")

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def pooled_snr_db(references: list[np.ndarray], estimates: list[np.ndarray]) -> float:
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in references)
    error = sum(float(np.sum((r.astype(np.float64) - e) ** 2))
                for r, e in zip(references, estimates))
    return 10 * np.log10(signal / max(error, 1e-30))


OWN_BAND_MIN_HZ = 500.0  # LSD-HF to own bandwidth: only clips holding this much above the cutoff


def usable(degradation: Degradation | None, own_bandwidth_hz: float, sample_rate: int) -> bool:
    """A clip serves a row only if it holds what the row removes: its own bandwidth is at
    least 1.05 x the row's band limit (full band: at least FULL_BAND_FRACTION x Nyquist)."""
    if degradation is None:
        return own_bandwidth_hz >= FULL_BAND_FRACTION * sample_rate / 2
    return own_bandwidth_hz >= 1.05 * degradation.band_limit_hz()


def evaluate_row(name: str, degradation: Degradation | None, clips: list[np.ndarray],
                 run: Callable[[np.ndarray], tuple[np.ndarray, float | None]],
                 sample_rate: int, own_bandwidths_hz: list[float] | None = None) -> RowResult:
    """``run`` maps one degraded clip (samples,) to (output, detected bandwidth Hz). With
    ``own_bandwidths_hz``, only the clips :func:`usable` for the row count."""
    own = own_bandwidths_hz or [sample_rate / 2] * len(clips)
    if own_bandwidths_hz is not None:
        kept = [(c, bw) for c, bw in zip(clips, own) if usable(degradation, bw, sample_rate)]
        clips, own = [c for c, _ in kept], [bw for _, bw in kept]
    if not clips:
        nan = float("nan")
        return RowResult(name, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0)
    inputs = [clip if degradation is None else degradation.apply(clip, sample_rate)
              for clip in clips]
    outputs, bandwidths = zip(*(run(x) for x in inputs))
    bandwidths = [b if b else sample_rate / 2 for b in bandwidths]
    refs = list(inputs) if degradation is None else clips  # full band: output vs its input
    per_clip = [metrics.snr_db(r, o) - (metrics.snr_db(r, x) if degradation is not None else 0)
                for r, x, o in zip(refs, inputs, outputs)]
    snr_in = pooled_snr_db(refs, inputs) if degradation is not None else float("inf")
    snr_out = pooled_snr_db(refs, outputs)
    hf = [min(b, 0.95 * sample_rate / 2) for b in bandwidths]
    # per clip, input and output against the reference: LSD over every bin, LSD-HF above the
    # detected cutoff and (band-limited rows, clips holding OWN_BAND_MIN_HZ above it) LSD-HF
    # up to the clip's own bandwidth; one log spectrogram per signal (metrics.lsd_bands)
    lsd_all, lsd_own = [], []
    for r, x, o, c, u in zip(refs, inputs, outputs, hf, own):
        with_own = degradation is not None and u > c + OWN_BAND_MIN_HZ
        bands = [(None, None), (c, None)] + ([(c, min(u, sample_rate / 2))] if with_own else [])
        values = metrics.lsd_bands(r, [x, o], sample_rate, bands)  # (in / out, bands)
        lsd_all.append(values[:, :2])
        if with_own:
            lsd_own.append(values[:, 2])
    (lsd_in, lsd_hf_in), (lsd_out, lsd_hf_out) = np.mean(lsd_all, axis=0).tolist()
    own_in, own_out = (np.mean(lsd_own, axis=0).tolist() if lsd_own
                       else (float("nan"), float("nan")))
    return RowResult(
        name, snr_in, snr_out, snr_out - snr_in if degradation is not None else snr_out,
        float(np.mean([d < -0.5 for d in per_clip])) if degradation is not None else
        float(np.mean([d < 40.0 for d in per_clip])), lsd_in, lsd_out, lsd_hf_in, lsd_hf_out,
        float(np.median(bandwidths)), len(clips), own_in, own_out)


def extender_runner(bwe) -> Callable[[np.ndarray], tuple[np.ndarray, float | None]]:
    """One clip through a BandwidthExtender's offline path (= streaming, shifted)."""
    def run(x: np.ndarray) -> tuple[np.ndarray, float | None]:
        out = bwe.process(x.astype(np.float32), bwe.sample_rate)
        return out, bwe.input_bandwidth_hz
    return run


def evaluate_matrix(bwe, clips: list[np.ndarray], rows: tuple[str, ...] | None = None,
                    progress: Callable[[str], None] | None = None,
                    skirt_oracle: bool = False, stress: bool = False) -> list[RowResult]:
    """Every row (or ``rows``) of :func:`matrix_rows` through ``bwe``; ``skirt_oracle``: the
    filter rows with the skirt boost's estimate replaced by the row's known filter
    (:mod:`rtbwe.training.skirt_oracle`: the exact skirt, a reference for estimates);
    ``stress``: the rows of :func:`rtbwe.training.stress.stress_rows` instead (no oracle)."""
    from .real import own_bandwidth_hz
    from .skirt_oracle import oracle_lock
    from .stress import level_runner, stress_rows

    table = stress_rows() if stress else matrix_rows()
    skirt_oracle = skirt_oracle and not stress
    names = rows or tuple(table)
    own = [own_bandwidth_hz(c) if bwe.sample_rate == 48000 else bwe.sample_rate / 2
           for c in clips]
    own = [bw if np.isfinite(bw) else 0.0 for bw in own]
    results = []
    settings = bwe._band_lock
    for name in names:
        if skirt_oracle:  # the processor builds its lock from these at each offline run
            bwe._band_lock = oracle_lock(settings, table[name])
        row, run = table[name], extender_runner(bwe)
        if stress:  # a quiet row runs its input level_db down; a full-band row scores as one
            row, run = (None if row.degrade is None else row), level_runner(run, row.level_db)
        try:
            results.append(evaluate_row(name, row, clips, run, bwe.sample_rate, own))
        finally:
            bwe._band_lock = settings
        if progress:
            r = results[-1]
            progress(f"{name}: ΔSNR {r.dsnr_db:+.2f} dB, worse {r.worse_fraction:.0%}, "
                     f"LSD-HF {r.lsd_hf_in:.2f} -> {r.lsd_hf_out:.2f}")
    return results


def _own_cell(r: RowResult) -> str:
    if not np.isfinite(r.lsd_own_in):
        return "—"
    change = 100 * (r.lsd_own_out / r.lsd_own_in - 1)
    return f"{r.lsd_own_in:.3f} → {r.lsd_own_out:.3f} ({change:+.0f} %)"


def markdown_table(results: list[RowResult], title: str) -> str:
    lines = [f"### {title}", "",
             "| input | clips | detected bandwidth | SNR in (dB) | SNR out (dB) | ΔSNR (dB) | "
             "clips worse | LSD in → out | LSD-HF in → out | LSD-HF to own bandwidth |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        full = r.name == "full band"
        lines.append(
            f"| {r.name} | {r.clips} | {r.bandwidth_hz / 1000:.1f} kHz | "
            f"{'—' if full else f'{r.snr_in_db:.2f}'} | {r.snr_out_db:.2f} | "
            f"{'(out vs in) ' + f'{r.dsnr_db:.1f}' if full else f'{r.dsnr_db:+.2f}'} | "
            f"{r.worse_fraction:.0%} | {r.lsd_in:.3f} → {r.lsd_out:.3f} | "
            f"{r.lsd_hf_in:.3f} → {r.lsd_hf_out:.3f} | {_own_cell(r)} |")
    return "\n".join(lines) + "\n"
