"""Which files ``rtbwe process`` reads and writes, and how it keeps the user's files safe.

* :func:`plan_jobs` - inputs (files or folders) and the output (a file, or a folder in batch
  mode) become a list of :class:`Job` s, checked before the model loads: every input exists,
  no output is its own input (``os.path.samefile`` too), an existing output is refused unless
  ``overwrite`` (ffmpeg's ``-y``) or skipped with ``skip_existing``, the output folder exists
  (it is never created: a typo should not scatter files), and no two inputs share an output.
* :func:`verify_input` - pedalboard pads a short read with zeros and decodes past a corrupt
  FLAC frame in silence, so a second decoder, libsndfile, checks the length a WAV/AIFF/FLAC
  header announces and decodes every FLAC frame; a mismatch is an error naming the file and the
  position.
* :func:`atomic_output` - audio is written to a hidden temporary file in the output's folder
  and renamed over the target only when the whole file succeeded; an error or Ctrl-C removes
  it, and an existing file is never touched before that rename.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
BATCH_SUFFIX = ".wav"          # what batch mode writes: <input stem>.wav
SUBTYPE_BITS = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}   # pedalboard's bit_depth
DEFAULT_SUBTYPE = {".wav": "FLOAT", ".flac": "PCM_24", ".aif": "PCM_24", ".aiff": "PCM_24"}
SUBTYPES_FOR = {".wav": ("PCM_16", "PCM_24", "FLOAT"), ".flac": ("PCM_16", "PCM_24"),
                ".aif": ("PCM_16", "PCM_24", "FLOAT"), ".aiff": ("PCM_16", "PCM_24", "FLOAT")}
EXACT_LENGTH_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "FLAC"}
VERIFY_BLOCK_FRAMES = 1 << 16  # libsndfile decode check: frames per read


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


@dataclass(frozen=True)
class Job:
    input_path: Path
    output_path: Path


def audio_files_in(folder: Path) -> list[Path]:
    """The audio files directly inside ``folder`` (not its sub-folders), sorted by name."""
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                   and not p.name.startswith("."))
    if not found:
        raise CliError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in folder {folder}")
    return found


def _identity(path: Path) -> tuple[int, int] | Path:
    """(device, inode) of an existing file, so links and other spellings compare equal (what
    ``os.path.samefile`` compares); the resolved path of one that does not exist yet."""
    try:
        stat = os.stat(path)
    except OSError:
        return path.resolve()
    return (stat.st_dev, stat.st_ino)


def check_writable_suffix(path: Path, subtype: str | None) -> None:
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise CliError(f"cannot write {path}: use a .wav, .flac, .aiff, .ogg or .mp3 name")
    if subtype is not None and subtype not in SUBTYPES_FOR.get(suffix, ()):
        allowed = SUBTYPES_FOR.get(suffix)
        raise CliError(f"--subtype {subtype} does not apply to {suffix} files"
                       + (f" (choose {', '.join(allowed)})" if allowed else
                          " (lossy formats have no sample format; drop --subtype)"))


def plan_jobs(inputs: list[str], output: str, overwrite: bool = False,
              skip_existing: bool = False, subtype: str | None = None
              ) -> tuple[list[Job], list[Job]]:
    """The (input, output) pairs to process and those skipped because the output exists.

    One input file and an output that is not an existing folder: the output is that file.
    Otherwise (several inputs, a folder among them, or an existing output folder) each input
    ``x.ext`` is written to ``<output folder>/x.wav``. Raises :class:`CliError` before any
    work when a rule in the module docstring is broken.
    """
    sources: list[Path] = []
    for name in inputs:
        path = Path(name)
        if not path.exists():
            raise CliError(f"input file not found: {path}")
        sources.extend(audio_files_in(path) if path.is_dir() else [path])
    out = Path(output)
    batch = len(inputs) > 1 or any(Path(n).is_dir() for n in inputs) or out.is_dir()
    if batch:
        if not out.is_dir():
            raise CliError(f"output folder {out} does not exist; create it first (mkdir -p "
                           f"{out})" if not out.exists() else f"{out} is a file; with several "
                           "inputs or a folder the output must be a folder")
        jobs = [Job(src, out / (src.stem + BATCH_SUFFIX)) for src in sources]
    else:
        if not out.parent.is_dir():
            raise CliError(f"output folder {out.parent} does not exist; create it first "
                           f"(mkdir -p {out.parent})")
        jobs = [Job(sources[0], out)]
    by_output: dict[Path, Path] = {}
    for job in jobs:
        check_writable_suffix(job.output_path, subtype)
        key = job.output_path.resolve()
        if key in by_output:
            raise CliError(f"{by_output[key]} and {job.input_path} would both be written to "
                           f"{job.output_path}; rename one of them")
        by_output[key] = job.input_path
    todo, skipped, existing = [], [], []
    identities = {_identity(src): src for src in sources}
    for job in jobs:
        src = identities.get(_identity(job.output_path))
        if src is not None:
            raise CliError(f"output {job.output_path} is the input file {src}; rtbwe "
                           "never writes over its input. Choose another output name.")
        if job.output_path.exists():
            if job.output_path.is_dir():
                raise CliError(f"output {job.output_path} is a folder")
            if skip_existing:
                skipped.append(job)
                continue
            if not overwrite:
                existing.append(job.output_path)
                continue
        todo.append(job)
    if existing:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise CliError(f"output exists: {shown} ({len(existing)} file"
                       f"{'s' if len(existing) > 1 else ''}). Pass -y/--overwrite to replace, "
                       "or --skip-existing to keep and skip.")
    return todo, skipped


def verify_input(path: Path, announced_frames: int, sample_rate: float) -> None:
    """Cross-check pedalboard's ``announced_frames`` of ``path`` with libsndfile.

    Raises :class:`CliError` naming the file and the position when a WAV/AIFF/FLAC holds fewer
    frames than announced, or when libsndfile cannot decode a FLAC frame (lost sync, bad CRC).
    Formats libsndfile does not read (mp3 on old versions) pass unchecked.
    """
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:  # not a format libsndfile reads: pedalboard's word is all we have
        return
    if info.format not in EXACT_LENGTH_FORMATS:
        return

    def truncated(frames: int) -> CliError:
        return CliError(f"{path} is truncated: its header announces {announced_frames} frames "
                        f"({announced_frames / sample_rate:.2f} s) but the audio ends at frame "
                        f"{frames} ({frames / sample_rate:.2f} s)")

    if info.frames < announced_frames:
        raise truncated(info.frames)
    if info.format != "FLAC":
        return
    decoded = 0
    with soundfile.SoundFile(str(path)) as sound:
        while True:
            try:
                got = sound.read(VERIFY_BLOCK_FRAMES, dtype="int16").shape[0]
            except Exception as err:
                raise CliError(f"{path} is corrupt: libsndfile cannot decode the FLAC frames "
                               f"after frame {decoded} ({decoded / sample_rate:.2f} s): "
                               f"{err or 'lost sync'}") from None
            if got == 0:
                break
            decoded += got
    if decoded < announced_frames:
        raise truncated(decoded)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, else it goes.

    With ``overwrite`` False the final step is a hard link, which fails rather than replace a
    file that appeared meanwhile (a :class:`CliError`; the finished audio is discarded).
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would give
        if overwrite:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise CliError(f"{path} appeared while rtbwe was writing it; left it untouched "
                           "(-y/--overwrite replaces it)") from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise CliError(f"{path} appeared while rtbwe was writing it") from None
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
