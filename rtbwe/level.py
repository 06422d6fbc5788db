"""Output level: never clip silently.

Bandwidth extension adds energy above the input's cutoff, so an input normalised to a 0.99
peak can come out above full scale (issue 13: the demo clip peaked at 1.21; full-band white
noise gains 16-19 dB). Written to an integer format (PCM_16/PCM_24 wav, flac), those samples
clip hard; a float wav keeps them, and the player clips them. The policy of ``rtbwe process``:

* by default the output is written as computed, and :class:`ClipCounter` counts every sample
  above full scale (``|x| > 1``); :func:`clip_warning` turns the count into a warning line
  (how many samples, the peak in dBFS, and ``--limit`` as the fix);
* ``--limit`` runs :class:`PeakLimiter` on the output first: a zero-latency peak limiter
  that keeps every sample at or below ``threshold_db`` (default -1 dBFS) and leaves audio
  that never reaches it bit-identical.

Why not ``pedalboard.Limiter``: measured on 1 s 440 Hz sines it is a loudness maximiser, not
a safety limiter: with ``threshold_db=-1`` a 0.05 peak comes out at 0.086 (+4.7 dB) and a 0.5
peak at 0.63, so it would change every file, clipping or not.

:class:`PeakLimiter` bounds sample peaks, not inter-sample (true) peaks; those can exceed the
threshold by a fraction of a dB on real audio, which the 1 dB default margin absorbs.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["ClipCounter", "PeakLimiter", "clip_warning", "FULL_SCALE", "DEFAULT_LIMIT_DB"]

FULL_SCALE = 1.0
DEFAULT_LIMIT_DB = -1.0
DEFAULT_RELEASE_MS = 100.0


class ClipCounter:
    """Counts samples above full scale and the peak, block by block (constant memory)."""

    def __init__(self) -> None:
        self.clipped_samples = 0
        self.total_samples = 0
        self.peak = 0.0

    def update(self, block: np.ndarray) -> None:
        """``block`` float32 (channels, samples), as written to the output."""
        if block.size == 0:
            return
        magnitude = np.abs(block)
        self.clipped_samples += int(np.count_nonzero(magnitude > FULL_SCALE))
        self.total_samples += block.size
        self.peak = max(self.peak, float(magnitude.max()))


def clip_warning(clipped_samples: int, total_samples: int, peak: float) -> str | None:
    """One warning line when any sample is above full scale, else None."""
    if clipped_samples <= 0:
        return None
    share = 100.0 * clipped_samples / max(total_samples, 1)
    return (f"{clipped_samples} output samples ({share:.3g} %) are above full scale (peak "
            f"{20 * math.log10(peak):+.1f} dBFS): an integer format (PCM_16/PCM_24, flac) clips "
            "them, a float wav keeps them for the player to clip. Pass --limit to limit the "
            f"output to {DEFAULT_LIMIT_DB:g} dBFS, or lower the input level")


@numba.njit(cache=True, nogil=True)
def _limit(audio: np.ndarray, threshold: float, release: float, state: np.ndarray) -> int:
    """In place on ``audio`` (channels, n) float32; ``state[0]`` is the running gain.
    Returns how many frames were attenuated."""
    channels, n = audio.shape
    gain = state[0]
    attenuated = 0
    for i in range(n):
        peak = 0.0
        for c in range(channels):
            peak = max(peak, abs(audio[c, i]))
        gain = 1.0 - (1.0 - gain) * release  # recover towards unity
        if peak * gain > threshold:
            gain = threshold / peak           # instant attack: never above the threshold
        if gain < 1.0:
            attenuated += 1
            for c in range(channels):
                audio[c, i] = min(max(audio[c, i] * gain, -threshold), threshold)
    state[0] = gain
    return attenuated


class PeakLimiter:
    """Zero-latency sample-peak limiter for (channels, samples) float32 streams.

    Args:
        sample_rate: Hz, for the release time.
        threshold_db: the highest sample magnitude out, in dBFS (default -1).
        release_ms: time constant of the gain's return to unity after a peak.

    Instant attack (no look-ahead, so no added latency), exponential release; all channels
    share one gain, so the stereo image does not move. Audio whose peaks stay below the
    threshold while the gain is at unity passes bit-identical.
    """

    def __init__(self, sample_rate: float, threshold_db: float = DEFAULT_LIMIT_DB,
                 release_ms: float = DEFAULT_RELEASE_MS) -> None:
        if not (math.isfinite(threshold_db) and threshold_db <= 0.0):
            raise ValueError(f"threshold_db must be <= 0 dBFS, got {threshold_db}")
        if not (math.isfinite(release_ms) and release_ms > 0.0):
            raise ValueError(f"release_ms must be > 0, got {release_ms}")
        self.threshold = 10.0 ** (threshold_db / 20.0)
        self.release = math.exp(-1000.0 / (release_ms * sample_rate))
        self.limited_frames = 0
        self._state = np.ones(1, np.float64)

    def reset(self) -> None:
        self._state[0] = 1.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """(channels, n) -> a new limited (channels, n) float32 array."""
        out = np.array(block, dtype=np.float32, order="C", copy=True)
        self.limited_frames += int(_limit(out, self.threshold, self.release, self._state))
        return out
