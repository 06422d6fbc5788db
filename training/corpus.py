"""The offline music corpus: music21 scores rendered with fluidsynth, split by piece.

``rtbwe-train data build OUT_DIR`` picks scores from the ``music21`` corpus (Bach chorales
and keyboard works, string quartets, other pieces), gives each part a General MIDI
instrument (piano the most common), sets note velocities in 100..127 (the low layers of
the soundfonts are dark), renders with ``fluidsynth`` at 48 kHz in float, and writes mono
24-bit FLAC files plus ``manifest.json``. The split into train / validation / test is by
piece and deterministic for a given seed.

Needs Debian's ``fluidsynth`` and ``musescore-general-soundfont`` (or
``fluid-soundfont-gm``): ``apt-get install fluidsynth musescore-general-soundfont``.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

SOUNDFONTS = ("/usr/share/sounds/sf3/MuseScore_General.sf3",
              "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
SAMPLE_RATE = 48000
# General MIDI programs (0-based) used for non-piano parts.
PROGRAMS = {"piano": 0, "bright_piano": 1, "electric_piano": 4, "harpsichord": 6,
            "vibraphone": 11, "marimba": 12, "organ": 19, "nylon_guitar": 24, "violin": 40,
            "viola": 41, "cello": 42, "strings": 48, "choir": 52, "trumpet": 56,
            "french_horn": 60, "oboe": 68, "clarinet": 71, "flute": 73,
            # bright programs: their soundfont samples reach far above 12 kHz
            "celesta": 8, "glockenspiel": 9, "tubular_bells": 14, "steel_guitar": 25,
            "distortion_guitar": 30, "brass_section": 61, "piccolo": 72, "square_lead": 80}
STRING_PROGRAMS = ("violin", "viola", "cello", "strings")


@dataclass(frozen=True)
class CorpusConfig:
    """Build settings; every field is a CLI flag of ``rtbwe-train data build``."""

    max_pieces: int = 200
    max_seconds: float = 40.0
    seed: int = 0
    piano_probability: float = 0.35
    drum_probability: float = 0.5  # add a General MIDI drum track (channel 10) to the piece
    velocity_min: int = 100
    velocity_max: int = 127
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    workers: int = 2
    soundfont: str | None = None  # default: the first of SOUNDFONTS that exists


def find_soundfont() -> str:
    for path in SOUNDFONTS:
        if Path(path).exists():
            return path
    raise FileNotFoundError("no soundfont found; install one: apt-get install "
                            "musescore-general-soundfont (or fluid-soundfont-gm)")


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FileNotFoundError("fluidsynth not found; install it: apt-get install fluidsynth")
    return exe


def select_scores(max_pieces: int, seed: int) -> list[tuple[str, str]]:
    """(piece_id, score path) pairs: about half Bach, a quarter quartets, the rest others."""
    from music21 import corpus

    paths = [str(p) for p in corpus.getPaths()]

    def group(pred) -> list[str]:
        return sorted(p for p in paths if pred(p))

    bach = group(lambda p: "/bach/" in p)
    quartets = group(lambda p: any(f"/{c}/" in p for c in ("beethoven", "mozart", "haydn")))
    others = group(lambda p: any(f"/{c}/" in p for c in (
        "schumann_robert", "schumann_clara", "chopin", "joplin", "handel", "schubert",
        "corelli", "cpebach", "weber", "verdi", "beach", "monteverdi", "josquin",
        "airdsAirs", "essenFolksong", "oneills1850", "trecento")))
    rng = random.Random(seed)
    chosen: list[str] = []
    for pool, share in ((bach, 0.5), (quartets, 0.25), (others, 0.25)):
        rng.shuffle(pool)
        chosen += pool[: max(1, int(round(max_pieces * share)))]
    chosen = chosen[:max_pieces]

    def piece_id(path: str) -> str:
        rel = path.split("/corpus/", 1)[-1]
        return rel.rsplit(".", 1)[0].replace("/", "_")

    return [(piece_id(p), p) for p in chosen]


def split_of(piece_id: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split by piece: a hash of (seed, piece_id) in [0, 1)."""
    h = int(hashlib.sha256(f"{seed}:{piece_id}".encode()).hexdigest()[:12], 16) / 16**12
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "validation"
    return "train"


def _assign_instruments(score, rng: random.Random, piano_probability: float,
                        quartet: bool) -> list[str]:
    """Give every part a GM instrument: piano with ``piano_probability``, else strings for
    quartets and a random other program for the rest. Returns the names."""
    from music21 import instrument

    for el in list(score.recurse().getElementsByClass("Instrument")):
        el.activeSite.remove(el)
    names = []
    for part in score.parts:
        if rng.random() < piano_probability:
            name = "piano"
        elif quartet:
            name = rng.choice(STRING_PROGRAMS)
        else:
            name = rng.choice([n for n in PROGRAMS if n != "piano"])
        part.insert(0, instrument.instrumentFromMidiProgram(PROGRAMS[name]))
        names.append(name)
    return names


def _truncate(score, max_seconds: float) -> None:
    """Drop measures that start after ``max_seconds`` (at 120 bpm, the MIDI default, with
    20 % margin) so that fluidsynth does not render minutes we would cut anyway."""
    limit_quarters = max_seconds * 2.0 * 1.2
    for part in score.parts:
        for measure in list(part.getElementsByClass("Measure")):
            if measure.offset > limit_quarters:
                part.remove(measure)


# General MIDI percussion keys (channel 10): kick, snare, closed / open hi-hat, crash, ride
KICK, SNARE, HAT_CLOSED, HAT_OPEN, CRASH, RIDE = 36, 38, 42, 46, 49, 51


def add_drum_track(midi: Path, rng: random.Random) -> None:
    """Append a General MIDI drum track (channel 10) to ``midi``, in place: kick on beats
    1 and 3, snare on 2 and 4, eighth-note hi-hat or ride, a crash every 8 bars, velocities
    90..127. Cymbals and hats put real energy up to 20 kHz into the render."""
    import mido

    song = mido.MidiFile(str(midi))
    beat = song.ticks_per_beat
    end_ticks = max((sum(m.time for m in track) for track in song.tracks), default=0)
    cymbal = rng.choice((HAT_CLOSED, HAT_CLOSED, RIDE))
    events: list[tuple[int, int, int]] = []  # (tick, key, velocity)
    for eighth in range(int(end_ticks // (beat // 2)) + 1):
        tick, beat_index = eighth * (beat // 2), eighth // 2
        on_beat = eighth % 2 == 0
        events.append((tick, HAT_OPEN if rng.random() < 0.08 else cymbal, rng.randint(90, 127)))
        if on_beat and beat_index % 2 == 0:
            events.append((tick, KICK, rng.randint(100, 127)))
        if on_beat and beat_index % 2 == 1:
            events.append((tick, SNARE, rng.randint(100, 127)))
        if on_beat and beat_index % 32 == 0:
            events.append((tick, CRASH, rng.randint(100, 127)))
    messages = sorted([(tick, 1, key, velocity) for tick, key, velocity in events]
                      + [(tick + beat // 4, 0, key, 0) for tick, key, _ in events])
    track, now = mido.MidiTrack(), 0
    for tick, on, key, velocity in messages:  # offs before ons at the same tick
        track.append(mido.Message("note_on" if on else "note_off", channel=9, note=key,
                                  velocity=velocity, time=tick - now))
        now = tick
    song.tracks.append(track)
    song.save(str(midi))


def _render(cfg: dict, midi: Path, raw: Path) -> tuple[np.ndarray | None, str]:
    """fluidsynth -> raw float32 stereo (samples, 2), capped at ``max_seconds`` + 2 s.

    Some scores yield MIDI files whose last notes never stop, so fluidsynth would render for
    ever (we saw a 17 GB file). Raw output can be read at any length, so the renderer is
    killed as soon as it has written enough, and after a hard time limit.
    """
    limit_frames = int((cfg["max_seconds"] + 2.0) * SAMPLE_RATE)
    limit_bytes = limit_frames * 2 * 4
    cmd = [cfg["fluidsynth"], "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-F", str(raw),
           "-r", str(SAMPLE_RATE), "-O", "float", "-T", "raw", cfg["soundfont"], str(midi)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300.0
    while proc.poll() is None:
        if (raw.exists() and raw.stat().st_size >= limit_bytes) or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            break
        time.sleep(0.1)
    if not raw.exists() or raw.stat().st_size < 8:
        err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
        return None, f"fluidsynth produced no audio: {err}"
    data = np.fromfile(raw, dtype=np.float32, count=2 * limit_frames)
    return data[: len(data) // 2 * 2].reshape(-1, 2), ""


def render_piece(job: tuple[str, str, str, dict]) -> dict | None:
    """Render one score to mono 24-bit FLAC; returns its manifest entry or None if empty."""
    import soundfile as sf
    from music21 import corpus

    piece_id, score_path, out_dir, cfg = job
    rng = random.Random(f"{cfg['seed']}:{piece_id}")
    try:
        score = corpus.parse(score_path)
        if not hasattr(score, "parts") or len(score.parts) == 0:
            return None
        quartet = any(f"/{c}/" in score_path for c in ("beethoven", "mozart", "haydn"))
        instruments = _assign_instruments(score, rng, cfg["piano_probability"], quartet)
        _truncate(score, cfg["max_seconds"])
        for n in score.recurse().notes:
            n.volume.velocity = rng.randint(cfg["velocity_min"], cfg["velocity_max"])
    except Exception as err:  # noqa: BLE001 - a score music21 cannot parse is skipped
        return {"piece_id": piece_id, "error": f"parse: {err}"}
    with tempfile.TemporaryDirectory() as tmp:
        midi, raw = Path(tmp) / "p.mid", Path(tmp) / "p.raw"
        try:
            score.write("midi", fp=str(midi))
            drums = rng.random() < cfg["drum_probability"]
            if drums:
                add_drum_track(midi, rng)
        except Exception as err:  # noqa: BLE001
            return {"piece_id": piece_id, "error": f"midi: {err}"}
        audio, error = _render(cfg, midi, raw)
        if audio is None:
            return {"piece_id": piece_id, "error": error}
    mono = audio.mean(axis=1)
    loud = np.flatnonzero(np.abs(mono) > 1e-4)
    if loud.size == 0:
        return None
    mono = mono[loud[0]: loud[-1] + 1][: int(cfg["max_seconds"] * SAMPLE_RATE)]
    peak = float(np.abs(mono).max())
    mono = mono * (0.7 / peak)  # normalise: 24-bit keeps the quiet high band well above LSB
    split = split_of(piece_id, cfg["seed"], cfg["val_fraction"], cfg["test_fraction"])
    rel = Path(split) / f"{piece_id}.flac"
    (Path(out_dir) / split).mkdir(parents=True, exist_ok=True)
    sf.write(str(Path(out_dir) / rel), mono, SAMPLE_RATE, subtype="PCM_24")
    return {"piece_id": piece_id, "file": str(rel), "split": split, "score": score_path.split(
        "/corpus/", 1)[-1], "instruments": instruments + (["drums"] if drums else []),
        "seconds": len(mono) / SAMPLE_RATE}


def build(out_dir: str | Path, config: CorpusConfig = CorpusConfig(), progress=print) -> dict:
    """Render the corpus into ``out_dir`` and write ``manifest.json``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**asdict(config), "soundfont": config.soundfont or find_soundfont(),
           "fluidsynth": find_fluidsynth()}
    jobs = [(pid, path, str(out), cfg) for pid, path in select_scores(config.max_pieces,
                                                                      config.seed)]
    entries, errors = [], []
    with Pool(max(1, config.workers)) as pool:
        for i, entry in enumerate(pool.imap(render_piece, jobs), 1):
            if entry is None:
                continue
            (errors if "error" in entry else entries).append(entry)
            if i % 10 == 0 or i == len(jobs):
                progress(f"rendered {i}/{len(jobs)} scores, {len(entries)} kept")
    entries.sort(key=lambda e: e["piece_id"])
    manifest = {"sample_rate": SAMPLE_RATE, "config": {k: v for k, v in cfg.items()
                                                       if k not in ("fluidsynth",)},
                "pieces": entries, "errors": errors,
                "seconds": {s: round(sum(e["seconds"] for e in entries if e["split"] == s), 1)
                            for s in ("train", "validation", "test")}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def manifest_hash(root: str | Path) -> str:
    """sha256 of a corpus manifest (or of a MAESTRO csv), recorded in model cards."""
    root = Path(root)
    for name in ("manifest.json", "maestro-v3.0.0.csv"):
        if (root / name).exists():
            return hashlib.sha256((root / name).read_bytes()).hexdigest()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(files).encode()).hexdigest()
