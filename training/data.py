"""Datasets and training pairs.

Three sources, each split by piece (or file), never by segment:

* our rendered corpus (``manifest.json`` from :mod:`rtbwe.training.corpus`);
* real MAESTRO v3 (``maestro-v3.0.0.csv`` and its ``split`` column);
* any folder of audio files (random split by file with a fixed seed).

:class:`PairSampler` draws random segments ``(batch, 1, segment_samples)`` from the
in-memory audio and low-passes each input with a random Table I training filter (data
augmentation, "DA"; optionally Table I plus flat-passband filters) or with Chebyshev-1
order 6 only. Each segment is filtered with ``FILTER_CONTEXT`` samples of real signal on
both sides, so it equals a crop of the zero-phase-filtered whole signal.
"""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtbwe import conditioning, filters

from . import clip_conditions

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
SPLITS = ("train", "validation", "test")
FILTER_CONTEXT = 2048


def corpus_files(root: str | Path) -> dict[str, list[Path]]:
    """Files per split from our corpus manifest."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for entry in manifest["pieces"]:
        out[entry["split"]].append(root / entry["file"])
    return out


def maestro_files(root: str | Path) -> dict[str, list[Path]]:
    """Files per split from MAESTRO v3's ``maestro-v3.0.0.csv`` (split column)."""
    root = Path(root)
    csv_path = root / "maestro-v3.0.0.csv"
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path} not found: point at the MAESTRO v3 root folder")
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            split = row["split"].strip()
            if split not in out:
                raise ValueError(f"{csv_path}: unknown split {split!r} for {row['audio_filename']}")
            out[split].append(root / row["audio_filename"])
    return out


def folder_files(root: str | Path, seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.1) -> dict[str, list[Path]]:
    """Random split by file of every audio file under ``root``."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    random.Random(seed).shuffle(files)
    n_test = int(round(len(files) * test_fraction))
    n_val = int(round(len(files) * val_fraction))
    if len(files) >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    return {"test": sorted(files[:n_test]), "validation": sorted(files[n_test:n_test + n_val]),
            "train": sorted(files[n_test + n_val:])}


def dataset_files(root: str | Path, kind: str = "auto", seed: int = 0) -> dict[str, list[Path]]:
    """Dispatch on ``kind``: ``corpus``, ``maestro``, ``folder`` or ``auto`` (by marker file)."""
    root = Path(root)
    if kind == "auto":
        kind = ("corpus" if (root / "manifest.json").exists() else
                "maestro" if (root / "maestro-v3.0.0.csv").exists() else "folder")
    if kind == "corpus":
        return corpus_files(root)
    if kind == "maestro":
        return maestro_files(root)
    if kind == "folder":
        return folder_files(root, seed)
    raise ValueError(f"unknown dataset kind {kind!r}; use corpus, maestro, folder or auto")


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 (samples,) at ``sample_rate``, resampled with pedalboard's resampler."""
    from pedalboard.io import AudioFile

    try:
        with AudioFile(str(path)) as f:
            if f.samplerate != sample_rate:
                f = f.resampled_to(sample_rate)
            frames = f.frames if max_seconds is None else min(f.frames,
                                                              int(max_seconds * sample_rate))
            audio = f.read(int(frames))
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"cannot read audio file {path}: {err}") from None
    return audio.mean(axis=0).astype(np.float32)


@dataclass
class AudioPool:
    """Decoded mono tracks of one split, kept in memory (tracks: list of (samples,))."""

    tracks: list[np.ndarray]
    names: list[str]
    sample_rate: int
    bandwidth_hz: list[float] | None = None  # each track's own (wide training measures it)

    @classmethod
    def load(cls, files: list[Path], sample_rate: int, max_seconds: float | None = None,
             limit: int | None = None) -> "AudioPool":
        files = list(files)[:limit] if limit else list(files)
        tracks = [load_audio(p, sample_rate, max_seconds) for p in files]
        keep = [(t, p.stem) for t, p in zip(tracks, files) if len(t) > 0]
        if not keep:
            raise ValueError("no usable audio in this split")
        return cls([t for t, _ in keep], [n for _, n in keep], sample_rate)

    @property
    def seconds(self) -> float:
        return sum(len(t) for t in self.tracks) / self.sample_rate


class PairSampler:
    """Random (lowpassed, target) training pairs, each (batch, 1, segment_samples) float32.

    Args:
        pool: decoded training audio.
        segment_samples: segment length; 8192 (171 ms at 48 kHz) by default.
        cutoff_hz: low-pass cutoff of the degradation (6 kHz is our standard task).
        augment: True = a random training filter per segment (DA); False =
            Chebyshev-1 order 6 only.
        augment_set: with DA, which filters: ``"table1"`` (the paper's Table I),
            ``"table1+flat"`` (Table I plus flat-passband Chebyshev-2 6 and 8; see
            ``filters.FLAT_FILTERS`` and docs/training.md) or ``"table1+cheby2"`` (Table I
            plus Chebyshev-2 4, 6 and 8, for conditioned models).
        min_rms: segments quieter than this are redrawn (silence teaches nothing).
        cutoff_jitter: with DA, each segment's cutoff is drawn log-uniformly from
            ``[cutoff_hz / (1 + j), cutoff_hz * (1 + j)]`` (0 = always ``cutoff_hz``, the paper).
            Real band-limited input never has exactly the trained cutoff; jitter asks the
            network to find the band edge in the signal instead of assuming it (what it did
            to our 6 kHz model: docs/training.md).
        seed: RNG seed; ``state()``/``set_state()`` make a resumed run reproducible.
    """

    def __init__(self, pool: AudioPool, segment_samples: int = 8192, cutoff_hz: float = 6000.0,
                 augment: bool = True, min_rms: float = 1e-3, seed: int = 0,
                 cutoff_jitter: float = 0.0, augment_set: str = "table1"):
        if augment_set not in filters.AUGMENT_SETS:
            raise ValueError(f"unknown augment_set {augment_set!r}; choose one of "
                             f"{', '.join(filters.AUGMENT_SETS)}")
        self.filter_set = filters.AUGMENT_SETS[augment_set]
        self.pool, self.segment_samples = pool, int(segment_samples)
        self.cutoff_hz, self.augment, self.min_rms = float(cutoff_hz), augment, min_rms
        if not 0.0 <= cutoff_jitter < 1.0:
            raise ValueError(f"cutoff_jitter must be in [0, 1), got {cutoff_jitter}")
        self.cutoff_jitter = float(cutoff_jitter)
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(t) for t in pool.tracks], dtype=np.float64)
        if lengths.max() < self.segment_samples:
            raise ValueError(f"every track is shorter than segment_samples={segment_samples}")
        self.weights = np.where(lengths >= self.segment_samples, lengths, 0.0)
        self.weights /= self.weights.sum()
        self.spectra: TrackSpectra | None = None  # built on the first conditioned batch

    def filter_for_segment(self) -> filters.FilterSpec:
        if not self.augment:
            return filters.SEEN_TEST_FILTER
        return self.filter_set[int(self.rng.integers(len(self.filter_set)))]

    def cutoff_for_segment(self) -> float:
        """The segment's cutoff in Hz: ``cutoff_hz``, or a jittered one with DA."""
        if not self.augment or self.cutoff_jitter == 0.0:
            return self.cutoff_hz
        span = np.log1p(self.cutoff_jitter)
        # whole hertz, so filters.design's cache serves the repeats
        return float(round(self.cutoff_hz * np.exp(self.rng.uniform(-span, span))))

    def segment(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """One (lowpassed, target) pair of (segment_samples,) plus its track index and start."""
        return self._draw()[:4]

    def _draw(self) -> tuple[np.ndarray, np.ndarray, int, int, filters.FilterSpec, float]:
        n = self.segment_samples
        for _ in range(20):
            index = int(self.rng.choice(len(self.pool.tracks), p=self.weights))
            track = self.pool.tracks[index]
            start = int(self.rng.integers(0, len(track) - n + 1))
            target = track[start:start + n]
            if np.sqrt(np.mean(target**2)) >= self.min_rms:
                break
        cutoff_hz, spec = self.cutoff_for_segment(), self.filter_for_segment()
        lo, hi = max(0, start - FILTER_CONTEXT), min(len(track), start + n + FILTER_CONTEXT)
        filtered = filters.apply(track[lo:hi], self.pool.sample_rate, cutoff_hz, spec)
        return filtered[start - lo:start - lo + n], target, index, start, spec, cutoff_hz

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(lowpassed, target), each (batch_size, 1, segment_samples) float32."""
        pairs = [self.segment() for _ in range(batch_size)]
        x = np.stack([p[0] for p in pairs])[:, None, :].astype(np.float32)
        y = np.stack([p[1] for p in pairs])[:, None, :].astype(np.float32)
        return x, y

    def conditioned_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lowpassed, target, condition): the first two (batch_size, 1, segment_samples),
        the condition (batch_size, conditioning.NUM_BANDS) float32, each segment's as a
        stream would see it at the segment's end after a random amount of history."""
        if self.spectra is None:
            self.spectra = TrackSpectra(self.pool)
        draws = [self._draw() for _ in range(batch_size)]
        x = np.stack([d[0] for d in draws])[:, None, :].astype(np.float32)
        y = np.stack([d[1] for d in draws])[:, None, :].astype(np.float32)
        c = np.stack([self.spectra.condition(index, start + self.segment_samples, spec, cutoff,
                                             self.rng) for _, _, index, start, spec, cutoff in draws])
        return x, y, c

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class TrackSpectra:
    """Clean per-bin frame powers of every track, to draw conditions (:mod:`rtbwe.conditioning`)
    for filtered segments without filtering seconds of audio: the filtered signal's frame
    powers are the clean ones times the filter's power response (checked in the tests).
    Memory: 214 float32 bins per 512-sample hop, about 0.4 x the decoded audio's."""

    MAX_HISTORY_S = 20.0

    def __init__(self, pool: AudioPool, window_samples: int = 1024, hop_samples: int = 512):
        self.sample_rate, self.window_samples = pool.sample_rate, window_samples
        self.hop_samples = hop_samples
        self.decay = conditioning.decay_per_frame(pool.sample_rate, hop_samples)
        self.freqs_hz = clip_conditions.bin_frequencies_hz(pool.sample_rate, window_samples)
        self.powers = [clip_conditions.signal_bin_power(t, pool.sample_rate, window_samples,
                                                     hop_samples)
                       for t in pool.tracks]  # each (frames, bins)
        self.gains: dict[tuple[str, float], np.ndarray] = {}

    def gain(self, spec: filters.FilterSpec, cutoff_hz: float) -> np.ndarray:
        key = (str(spec), cutoff_hz)
        if key not in self.gains:
            db = filters.zero_phase_response_db(self.sample_rate, cutoff_hz, spec.family,
                                                spec.order, self.freqs_hz)
            self.gains[key] = 10.0 ** (db / 10.0)
        return self.gains[key]

    def condition(self, index: int, end_sample: int, spec: filters.FilterSpec, cutoff_hz: float,
                  rng: np.random.Generator, history_frames: int | None = None) -> np.ndarray:
        """(NUM_BANDS,) condition of track ``index`` filtered by ``spec``, as the stream's
        tracker has it at ``end_sample``: half the time after all the history there is (up
        to ``MAX_HISTORY_S``), half after a uniform random number of frames (a stream that
        has just started). ``history_frames`` fixes the history instead."""
        powers = self.powers[index]
        last = min(max((end_sample - self.window_samples) // self.hop_samples, 0), len(powers) - 1)
        longest = min(last + 1, int(self.MAX_HISTORY_S * self.sample_rate / self.hop_samples))
        if history_frames is not None:
            history = min(int(history_frames), longest)
        else:
            history = longest if rng.random() < 0.5 else int(rng.integers(1, longest + 1))
        weights = self.decay ** np.arange(history - 1, -1, -1, dtype=np.float64)
        mean = weights @ powers[last - history + 1:last + 1] / weights.sum()
        band_power = clip_conditions.filtered_band_power(mean, self.gain(spec, cutoff_hz),
                                                      self.sample_rate, self.window_samples)
        return conditioning.to_condition(band_power)


def stretched_pool(pool: AudioPool, lowest: float, highest: float, copies: int,
                   seed: int = 0) -> AudioPool:
    """``pool`` plus ``copies`` stretched versions of each track: its frequencies multiplied
    by a factor drawn log-uniformly in [lowest, highest] per copy (soxr, HQ: the track read
    as if sampled at factor x its rate, so it plays ``1 / factor`` as long). Cutoff scaling
    (:mod:`rtbwe.rescale`) hands a network trained at 6 kHz windows band-limited at ``e``
    with their frequencies multiplied by ``6000 / e`` (0.6-2 for the default's 3-9.9 kHz):
    music brighter or darker than any the corpus holds at its own rate. A copy keeps what
    the resampler passes below Nyquist; its own bandwidth is measured again where it is
    used (:func:`rtbwe.training.trainer.targets_clearing_cutoff`)."""
    import soxr

    rng = np.random.default_rng(seed)
    tracks, names = list(pool.tracks), list(pool.names)
    for _ in range(int(copies)):
        for track, name in zip(pool.tracks, pool.names):
            factor = float(np.exp(rng.uniform(np.log(lowest), np.log(highest))))
            stretched = soxr.resample(track, pool.sample_rate * factor, pool.sample_rate, "HQ")
            if len(stretched) > 0:
                tracks.append(np.ascontiguousarray(stretched, np.float32))
                names.append(f"{name}@x{factor:.3f}")
    return AudioPool(tracks, names, pool.sample_rate)


def validation_clips(pool: AudioPool, clip_seconds: float = 2.0, clips: int = 16,
                     seed: int = 1234) -> list[np.ndarray]:
    """A fixed set of (samples,) clips from a validation pool, loudest of 4 random tries each."""
    rng = np.random.default_rng(seed)
    n = int(clip_seconds * pool.sample_rate)
    usable = [t for t in pool.tracks if len(t) >= n]
    if not usable:
        raise ValueError(f"no validation track is at least {clip_seconds} s long")
    out = []
    for i in range(clips):
        track = usable[i % len(usable)]
        starts = rng.integers(0, len(track) - n + 1, size=4)
        best = max(starts, key=lambda s: float(np.mean(track[s:s + n] ** 2)))
        out.append(track[best:best + n].copy())
    return out
