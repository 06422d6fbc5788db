"""Real recordings with real high-frequency content, from Debian packages only.

``rtbwe-train data real OUT_DIR`` turns the audio of these packages into mono 48 kHz 24-bit
FLAC tracks with a ``manifest.json`` in the corpus format (:mod:`rtbwe.training.corpus`):

========================== =========================================================
``hydrogen-drumkits``,     one-shot drum samples (WAV/FLAC); each kit becomes one track:
``hydrogen-drumkits-       its samples in random order, random gains, short gaps (a kit
effects``                  is the unit of the split, so a kit never spans two splits)
``hyperrogue-music``,      game soundtracks (Ogg Vorbis, Opus, and Ogg inside Nexuiz's
``nexuiz-music``,          ``music.pk3`` zip); each file becomes one track, the first
``warzone2100-music``,     ``max_seconds`` of it
``planetblupi-music-ogg``,
``drascula-music``
========================== =========================================================

Lossy files stop at their encoder's low-pass, and some drum samples were band-limited before
they were packaged. Each track's own bandwidth is measured (:mod:`rtbwe.bandwidth`, on the
whole track's long-term spectrum) and recorded in the manifest as ``bandwidth_hz``; the
trainer uses a track as a target only for input bandwidths well below it and never asks the
network to synthesise above it (:mod:`rtbwe.training.degrade`).

Install: ``apt-get install hydrogen-drumkits hydrogen-drumkits-effects hyperrogue-music
nexuiz-music warzone2100-music planetblupi-music-ogg drascula-music``.
"""
from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np

from rtbwe.bandwidth import detect_bandwidth_hz
from rtbwe.conditioning import full_bin_power

from .corpus import SAMPLE_RATE, split_of

PACKAGES = ("hydrogen-drumkits", "hydrogen-drumkits-effects", "hyperrogue-music",
            "nexuiz-music", "warzone2100-music", "planetblupi-music-ogg", "drascula-music")
HYDROGEN_KITS = Path("/usr/share/hydrogen/data/drumkits")
MUSIC_SOURCES = (("hyperrogue-music", Path("/usr/share/hyperrogue/music"), "*.ogg"),
                 ("warzone2100-music", Path("/usr/share/games/warzone2100/music"), "**/*.opus"),
                 ("planetblupi-music-ogg", Path("/usr/share/planetblupi/music"), "*.ogg"),
                 ("drascula-music", Path("/usr/share/scummvm/drascula/audio"), "*.ogg"))
NEXUIZ_PK3 = Path("/usr/share/games/nexuiz/data/music.pk3")


def decode(source: str | io.BytesIO) -> tuple[np.ndarray, int]:
    """Any file libsndfile reads (WAV, FLAC, Ogg Vorbis, Opus) -> mono float32, rate."""
    import soundfile as sf

    audio, rate = sf.read(source, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def to_48k(audio: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return audio if rate == SAMPLE_RATE else soxr.resample(audio, rate, SAMPLE_RATE).astype(
        np.float32)


# A clip's own bandwidth (the evaluation's labels: which matrix rows it joins; the corpus
# manifests' bandwidth_hz) keeps the detection's trend clamp of the fifteenth session, so that
# rows keep their clips and the manifests stay valid when the detection changes (sixteenth
# session: at 24 dB per octave dark clips were labelled up to 25 % higher and joined the
# 14 kHz rows)
LABEL_MAX_SLOPE_DB_PER_OCTAVE = 12.0


def own_bandwidth_hz(audio: np.ndarray) -> float:
    """The track's bandwidth from its whole long-term spectrum (Nyquist = full band), with
    the trend clamp LABEL_MAX_SLOPE_DB_PER_OCTAVE."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 1024)[::512]
    if len(frames) == 0:
        return float("nan")
    power = sum(full_bin_power(frames[i:i + 4096]).sum(axis=0)  # 4096 frames at a time
                for i in range(0, len(frames), 4096))
    return float(detect_bandwidth_hz(power / len(frames), SAMPLE_RATE, 1024,
                                     LABEL_MAX_SLOPE_DB_PER_OCTAVE)[0])


def kit_track(kit: Path, rng: random.Random, max_seconds: float) -> np.ndarray | None:
    """A kit's samples in random order, gains 0.3..1, gaps 20-250 ms, up to max_seconds."""
    files = sorted(p for p in kit.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    rng.shuffle(files)
    parts, total = [], 0
    for path in files * 3:  # small kits repeat (with new gains and gaps)
        try:
            audio, rate = decode(str(path))
        except (RuntimeError, ValueError):
            continue
        audio = to_48k(audio[: int(2.0 * rate)], rate)  # at most 2 s of each hit
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak < 1e-4:
            continue
        parts += [audio * (rng.uniform(0.3, 1.0) / peak),
                  np.zeros(int(rng.uniform(0.02, 0.25) * SAMPLE_RATE), np.float32)]
        total += len(audio) + len(parts[-1])
        if total >= max_seconds * SAMPLE_RATE:
            break
    return np.concatenate(parts)[: int(max_seconds * SAMPLE_RATE)] if parts else None


def sources() -> list[tuple[str, str, object]]:
    """(package, track id, loader) for everything installed; a loader returns audio at 48 kHz."""
    out: list[tuple[str, str, object]] = []
    if HYDROGEN_KITS.exists():
        for kit in sorted(p for p in HYDROGEN_KITS.iterdir() if p.is_dir()):
            out.append(("hydrogen-drumkits", f"hydrogen_{kit.name}", kit))
    for package, root, pattern in MUSIC_SOURCES:
        if root.exists():
            for path in sorted(root.glob(pattern)):
                ident = "_".join(path.relative_to(root).with_suffix("").parts)
                out.append((package, f"{package.split('-')[0]}_{ident}", path))
    if NEXUIZ_PK3.exists():
        with zipfile.ZipFile(NEXUIZ_PK3) as pk3:
            for name in sorted(n for n in pk3.namelist() if n.endswith(".ogg")):
                out.append(("nexuiz-music", f"nexuiz_{Path(name).stem}", name))
    return out


def load_source(package: str, item: object, rng: random.Random, max_seconds: float
                ) -> np.ndarray | None:
    if isinstance(item, Path) and item.is_dir():
        return kit_track(item, rng, max_seconds)
    if package == "nexuiz-music":
        with zipfile.ZipFile(NEXUIZ_PK3) as pk3:
            audio, rate = decode(io.BytesIO(pk3.read(str(item))))
    else:
        audio, rate = decode(str(item))
    start = int(min(10.0, max(0.0, len(audio) / rate - max_seconds)) * rate)  # skip intros
    return to_48k(audio[start:start + int(max_seconds * rate)], rate)


def build(out_dir: str | Path, max_seconds: float = 60.0, seed: int = 0,
          val_fraction: float = 0.1, test_fraction: float = 0.1, progress=print) -> dict:
    """Write every installed source as a FLAC track plus ``manifest.json``; returns it."""
    import soundfile as sf

    out = Path(out_dir)
    entries, errors = [], []
    found = sources()
    if not found:
        raise FileNotFoundError("none of the Debian packages is installed: apt-get install "
                                + " ".join(PACKAGES))
    for i, (package, ident, item) in enumerate(found, 1):
        rng = random.Random(f"{seed}:{ident}")
        try:
            audio = load_source(package, item, rng, max_seconds)
        except (RuntimeError, ValueError, OSError) as err:
            errors.append({"piece_id": ident, "error": str(err)})
            continue
        if audio is None or len(audio) < SAMPLE_RATE:
            continue
        audio = (audio * (0.7 / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)
        split = split_of(ident, seed, val_fraction, test_fraction)
        rel = Path(split) / f"{ident}.flac"
        (out / split).mkdir(parents=True, exist_ok=True)
        sf.write(str(out / rel), audio, SAMPLE_RATE, subtype="PCM_24")
        entries.append({"piece_id": ident, "file": str(rel), "split": split,
                        "source": package, "seconds": round(len(audio) / SAMPLE_RATE, 2),
                        "bandwidth_hz": round(own_bandwidth_hz(audio), 1)})
        if i % 20 == 0 or i == len(found):
            progress(f"real recordings: {i}/{len(found)} sources, {len(entries)} tracks")
    manifest = {"sample_rate": SAMPLE_RATE, "kind": "debian-real",
                "config": {"max_seconds": max_seconds, "seed": seed, "packages": PACKAGES},
                "pieces": entries, "errors": errors,
                "seconds": {s: round(sum(e["seconds"] for e in entries if e["split"] == s), 1)
                            for s in ("train", "validation", "test")}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
