"""Degradations of every bandwidth, and training pairs that see them as a stream would.

For models that serve any input bandwidth (``degradations = "wide"`` in a config), each
training segment gets its own degradation, drawn from:

==========  ======  ==================================================================
filter      50 %    Table I and Chebyshev-2 families (:mod:`rtbwe.filters`), zero-phase,
                    cutoff log-uniform in 3-16 kHz
resample    25 %    down to 8, 11.025, 16, 22.05, 24 or 32 kHz and back up, with soxr
                    (LQ/MQ/HQ/VHQ) or pedalboard's ``Resample`` (windowed-sinc qualities,
                    the ones that keep the signal aligned)
mp3         15 %    pedalboard's ``MP3Compressor``, VBR quality uniform in 0-9.5
gsm         10 %    pedalboard's ``GSMFullRateCompressor`` (8 kHz telephone codec)
==========  ======  ==================================================================

A degradation is applied to the segment *and* to up to ``MAX_HISTORY_S`` of audio before it,
and the :class:`~rtbwe.tracker.SpectrumTracker` runs over all of it, so the segment's
condition and detected bandwidth are exactly what the stream would have at the segment's end.
The network is trained through the same lock as at inference (:func:`rtbwe.passband.
lock_to_band`), from the detected bandwidth up to the target track's own bandwidth
(``AudioPool.bandwidth_hz``): it is never asked to synthesise above what its target holds.
A degradation's band limit is always drawn well below the target's own bandwidth
(``TARGET_MARGIN``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtbwe import conditioning, filters, tracker
from rtbwe.bandwidth import extension_cutoff_hz

MIN_CUTOFF_HZ, MAX_CUTOFF_HZ = 3000.0, 16000.0
RESAMPLE_RATES_HZ = (8000, 11025, 16000, 22050, 24000, 32000)
SOXR_QUALITIES = ("LQ", "MQ", "HQ", "VHQ")
PEDALBOARD_QUALITIES = ("WindowedSinc8", "WindowedSinc16", "WindowedSinc32")  # 64-256: 0.1-1 s per
KIND_PROBABILITIES = (("filter", 0.5), ("resample", 0.25), ("mp3", 0.15), ("gsm", 0.1))
FILTERS = filters.TRAIN_FILTERS + filters.CHEBY2_FILTERS
TARGET_MARGIN = 0.85   # band limits at most 0.85 x the target's own bandwidth
MIN_HISTORY_S, MAX_HISTORY_S = 0.5, 3.0
CONTEXT = 4096         # extra samples degraded after the segment (filter and codec edges)


@dataclass(frozen=True)
class Degradation:
    """One degradation: ``kind`` and its parameters (unused ones are None)."""

    kind: str
    spec: filters.FilterSpec | None = None
    cutoff_hz: float | None = None
    rate_hz: int | None = None
    resampler: str | None = None
    vbr_quality: float | None = None
    bitrate_kbps: int | None = None  # kind "mp3-cbr": a real MP3 file at this bit rate

    def __str__(self) -> str:
        if self.kind == "filter":
            return f"{self.spec}@{self.cutoff_hz:.0f}"
        if self.kind == "resample":
            return f"resample-{self.resampler}@{self.rate_hz}"
        if self.kind == "mp3":
            return f"mp3-vbr{self.vbr_quality:.1f}"
        if self.kind == "mp3-cbr":
            return f"mp3-{self.bitrate_kbps}kbps"
        return "gsm"

    def band_limit_hz(self) -> float:
        """The nominal band limit, for drawing within a target's bandwidth."""
        if self.kind == "filter":
            return float(self.cutoff_hz)
        if self.kind == "resample":
            return self.rate_hz / 2
        if self.kind == "gsm":
            return 4000.0
        if self.kind == "mp3-cbr":  # LAME's low-pass at 48 kHz mono, measured on noise
            return {32: 8000.0, 64: 16500.0}.get(self.bitrate_kbps, 19000.0)
        return 11000.0 + 800.0 * (9.5 - self.vbr_quality)  # LAME's VBR low-pass, roughly

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(samples,) float32 -> degraded (samples,) float32, time-aligned with the input."""
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if self.kind == "mp3-cbr":
            return _mp3_file_roundtrip(x, sample_rate, self.bitrate_kbps)
        if self.kind == "filter":
            return filters.apply(x, sample_rate, self.cutoff_hz, self.spec)
        if self.kind == "resample" and self.resampler.startswith("soxr"):
            import soxr

            quality = self.resampler.split("-", 1)[1]
            low = soxr.resample(x, sample_rate, self.rate_hz, quality=quality)
            y = soxr.resample(low, self.rate_hz, sample_rate, quality=quality)
        else:
            from pedalboard import GSMFullRateCompressor, MP3Compressor, Resample

            if self.kind == "resample":
                quality = getattr(Resample.Quality, self.resampler.split("-", 1)[1])
                plugin = Resample(float(self.rate_hz), quality=quality)
            elif self.kind == "mp3":
                plugin = MP3Compressor(vbr_quality=float(self.vbr_quality))
            else:
                plugin = GSMFullRateCompressor()
            y = plugin(x[None], float(sample_rate))[0]
        out = np.zeros_like(x)
        out[:min(len(y), len(x))] = y[:len(x)]
        return out


MP3_FILE_DELAY_SAMPLES = 1105  # LAME encoder (576) + decoder (529) delay, measured


def _mp3_file_roundtrip(x: np.ndarray, sample_rate: int, bitrate_kbps: int) -> np.ndarray:
    """Write a constant-bit-rate MP3 file with pedalboard (LAME) and read it back, aligned."""
    import tempfile

    from pedalboard.io import AudioFile

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/clip.mp3"
        with AudioFile(path, "w", float(sample_rate), 1, quality=f"{bitrate_kbps}k") as f:
            f.write(x[None])
        with AudioFile(path) as f:
            y = f.read(f.frames)[0]
    y = y[MP3_FILE_DELAY_SAMPLES:MP3_FILE_DELAY_SAMPLES + len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def draw(rng: np.random.Generator, max_limit_hz: float) -> Degradation:
    """A random degradation whose band limit is at most ``max_limit_hz`` (falls back to a
    filter at ``max_limit_hz`` when no other kind fits)."""
    kinds, weights = zip(*KIND_PROBABILITIES)
    for _ in range(10):
        kind = kinds[int(rng.choice(len(kinds), p=np.array(weights)))]
        if kind == "filter":
            top = min(MAX_CUTOFF_HZ, max_limit_hz)
            if top < MIN_CUTOFF_HZ:
                continue
            cutoff = float(round(np.exp(rng.uniform(np.log(MIN_CUTOFF_HZ), np.log(top)))))
            return Degradation("filter", FILTERS[int(rng.integers(len(FILTERS)))], cutoff)
        if kind == "resample":
            rates = [r for r in RESAMPLE_RATES_HZ if r / 2 <= max_limit_hz]
            if not rates:
                continue
            resampler = (f"soxr-{rng.choice(SOXR_QUALITIES)}" if rng.random() < 0.5 else
                         f"pedalboard-{rng.choice(PEDALBOARD_QUALITIES)}")
            return Degradation("resample", rate_hz=int(rng.choice(rates)), resampler=resampler)
        candidate = (Degradation("mp3", vbr_quality=float(rng.uniform(0.0, 9.5)))
                     if kind == "mp3" else Degradation("gsm"))
        if candidate.band_limit_hz() <= max_limit_hz:
            return candidate
    return Degradation("filter", FILTERS[0], float(max(MIN_CUTOFF_HZ / 2, max_limit_hz)))


def stream_state(degraded: np.ndarray, end_sample: int, sample_rate: int, bands: int,
                 window_samples: int = 1024, hop_samples: int = 512
                 ) -> tuple[np.ndarray, float, float]:
    """What a fresh stream's tracker holds after ``degraded[:end_sample]``: (condition
    (bands,) float32 (zeros if bands == 0), detected bandwidth Hz (NaN: unknown), extension
    cutoff Hz)."""
    from rtbwe.bandwidth import detect_bandwidth_hz

    frames_total = max((end_sample - window_samples) // hop_samples + 1, 1)
    start = end_sample - window_samples - (frames_total - 1) * hop_samples
    padded = np.pad(degraded[max(start, 0):end_sample], (max(-start, 0), 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window_samples)[::hop_samples]
    frames = np.clip(frames[:frames_total], -tracker.MAX_SAMPLE, tracker.MAX_SAMPLE)
    # the tracker's exponential average at a frame count, in one product
    decay = conditioning.decay_per_frame(sample_rate, hop_samples)
    frame_power = conditioning.full_bin_power(frames.astype(np.float32))

    def average(count: int) -> np.ndarray:
        weights = decay ** np.arange(count - 1, -1, -1, dtype=np.float64)
        return (weights @ frame_power[:count])[None] / weights.sum()
    power = average(len(frames))
    # the tracker detects every few frames and holds the value: use its latest detection
    detected_at = tracker.last_detection_frame(len(frames), sample_rate, hop_samples)
    bandwidth = (detect_bandwidth_hz(average(detected_at), sample_rate, window_samples)
                 if detected_at else np.array([np.nan]))
    cutoff = extension_cutoff_hz(bandwidth, sample_rate)
    condition = (conditioning.conditions_from_power(power, cutoff, bands, sample_rate,
                                                    window_samples)[0]
                 if bands else np.zeros(0, np.float32))
    return condition, float(bandwidth[0]), float(cutoff[0])


class WideSampler:
    """Training triples for any bandwidth: (degraded, target) (batch, 1, segment_samples),
    condition (batch, bands), and per segment the band the network fills: ``low_hz`` (the
    detected extension cutoff) and ``high_hz`` (the target's own bandwidth).

    Segments whose input the detector finds full band (nothing to fill) are redrawn.
    """

    def __init__(self, pool, segment_samples: int = 8192, bands: int = conditioning.WIDE_BANDS,
                 min_rms: float = 1e-3, seed: int = 0):
        self.pool, self.n, self.bands, self.min_rms = pool, int(segment_samples), bands, min_rms
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(t) for t in pool.tracks], dtype=np.float64)
        self.weights = np.where(lengths >= self.n, lengths, 0.0)
        self.weights /= self.weights.sum()
        self.names: list[str] = []  # the last batch's degradations, for logs and tests

    def draw_one(self):
        sr = self.pool.sample_rate
        for _ in range(50):
            index = int(self.rng.choice(len(self.pool.tracks), p=self.weights))
            track, own_hz = self.pool.tracks[index], self.pool.bandwidth_hz[index]
            start = int(self.rng.integers(0, len(track) - self.n + 1))
            target = track[start:start + self.n]
            if np.sqrt(np.mean(target ** 2)) < self.min_rms:
                continue
            degradation = draw(self.rng, TARGET_MARGIN * own_hz)
            history = int(self.rng.uniform(MIN_HISTORY_S, MAX_HISTORY_S) * sr)
            lo = max(0, start - history)
            hi = min(len(track), start + self.n + CONTEXT)
            degraded = degradation.apply(track[lo:hi], sr)
            condition, _, low_hz = stream_state(degraded, start + self.n - lo, sr, self.bands)
            if low_hz >= min(own_hz, sr / 2) - 200.0:
                continue  # nothing to fill (full band, unknown, or at the target's own limit)
            x = degraded[start - lo:start - lo + self.n]
            return x, target, condition, low_hz, min(own_hz, sr / 2), str(degradation)
        raise RuntimeError("could not draw a usable training segment in 50 tries; is the "
                           "training audio silent or full of band-limited tracks?")

    def batch(self, batch_size: int):
        """(x, y) (batch, 1, n) float32, condition (batch, bands) float32, low_hz, high_hz
        (batch,) float64."""
        draws = [self.draw_one() for _ in range(batch_size)]
        x = np.stack([d[0] for d in draws])[:, None].astype(np.float32)
        y = np.stack([d[1] for d in draws])[:, None].astype(np.float32)
        c = np.stack([d[2] for d in draws]).astype(np.float32)
        self.names = [d[5] for d in draws]
        return x, y, c, np.array([d[3] for d in draws]), np.array([d[4] for d in draws])

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def track_bandwidths_hz(tracks: list[np.ndarray], sample_rate: int) -> list[float]:
    """Each track's own bandwidth (Nyquist for full band) from its whole spectrum."""
    from .real import own_bandwidth_hz

    if sample_rate != 48000:
        return [sample_rate / 2.0] * len(tracks)
    out = []
    for t in tracks:
        bw = own_bandwidth_hz(t)
        out.append(float(extension_cutoff_hz(np.array([bw]), sample_rate)[0])
                   if np.isfinite(bw) else sample_rate / 2.0)
    return out


def describe() -> dict:
    """What ``degradations = "wide"`` trains on, for the model card."""
    return {"kinds": dict(KIND_PROBABILITIES),
            "filters": [str(f) for f in FILTERS],
            "filter_cutoff_hz": [MIN_CUTOFF_HZ, MAX_CUTOFF_HZ, "log-uniform"],
            "resample_rates_hz": list(RESAMPLE_RATES_HZ),
            "resamplers": [f"soxr-{q}" for q in SOXR_QUALITIES]
            + [f"pedalboard-{q}" for q in PEDALBOARD_QUALITIES],
            "mp3": "pedalboard MP3Compressor, vbr_quality uniform in [0, 9.5]",
            "gsm": "pedalboard GSMFullRateCompressor",
            "target_margin": TARGET_MARGIN,
            "history_s": [MIN_HISTORY_S, MAX_HISTORY_S],
            "lock": "network output through lock_to_band: from the detected bandwidth up to "
                    "the target's own measured bandwidth"}
