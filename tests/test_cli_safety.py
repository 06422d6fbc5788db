"""``rtbwe process`` never loses the user's data: its input, an existing file, a partial output.

Each test here failed before the fix it names (issue 12, "Data safety").
"""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from rtbwe import cli
from rtbwe.processor import BandwidthExtender


def _noise(path, seconds=0.5, rate=48000, channels=1, seed=0, subtype=None):
    x = 0.3 * np.random.default_rng(seed).standard_normal((int(rate * seconds), channels))
    sf.write(path, x.astype(np.float32), rate, subtype=subtype)
    return path


def _run(*argv):
    return cli.main(["process", *map(str, argv)])


def _hidden_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path, tiny_card, capsys):
    src = _noise(tmp_path / "a.wav")
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    os.symlink(src, tmp_path / "link.wav")
    os.link(src, tmp_path / "hard.wav")
    for output in (src, tmp_path / "sub" / ".." / "a.wav", tmp_path / "link.wav",
                   tmp_path / "hard.wav"):
        for extra in ((), ("-y",)):  # not even with --overwrite
            assert _run(src, output, "--model", tiny_card, *extra) == 1
            assert "is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_existing_output_is_refused_unless_overwrite(tmp_path, tiny_card, capsys):
    src, dst = _noise(tmp_path / "in.wav"), tmp_path / "out.wav"
    dst.write_text("keep")
    assert _run(src, dst, "--model", tiny_card) == 1
    assert "-y/--overwrite" in capsys.readouterr().err and dst.read_text() == "keep"
    assert _run(src, dst, "--model", tiny_card, "--skip-existing") == 0
    assert "skipped" in capsys.readouterr().out and dst.read_text() == "keep"
    assert _run(src, dst, "--model", tiny_card, "-y") == 0
    assert sf.info(dst).frames == 24000 and not _hidden_files(tmp_path)


def test_a_failure_leaves_an_existing_output_untouched(tmp_path, tiny_card, capsys):
    """Nine channels fail in the processor, after the output was opened (it was truncated)."""
    src, dst = _noise(tmp_path / "nine.wav", channels=9), tmp_path / "o.wav"
    dst.write_text("keep")
    assert _run(src, dst, "--model", tiny_card, "-y") == 1
    assert "channels" in capsys.readouterr().err
    assert dst.read_text() == "keep" and not _hidden_files(tmp_path)


def test_ctrl_c_leaves_no_output_and_no_temporary_file(tmp_path, tiny_card, monkeypatch):
    src, dst, old = _noise(tmp_path / "in.wav", 3.0), tmp_path / "new.wav", tmp_path / "old.wav"
    old.write_text("keep")
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the output file is open and holds a first block
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = BandwidthExtender.process
    monkeypatch.setattr(BandwidthExtender, "process", interrupted)
    assert _run(src, dst, "--model", tiny_card) == 130
    assert not dst.exists()
    calls.clear()
    assert _run(src, old, "--model", tiny_card, "-y") == 130
    assert old.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "old.wav"]


def test_truncated_wav_is_an_error_naming_file_and_position(tmp_path, tiny_card, capsys):
    """The header announces 2 s, the file holds 0.67 s; pedalboard pads with zeros."""
    full = _noise(tmp_path / "full.wav", 2.0, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:44 + 2 * 32160])
    assert _run(cut, tmp_path / "o.wav", "--model", tiny_card) == 1
    err = capsys.readouterr().err
    assert "cut.wav is truncated" in err and "0.67 s" in err and "2.00 s" in err
    assert not (tmp_path / "o.wav").exists() and not _hidden_files(tmp_path)


def test_corrupt_flac_is_an_error_naming_file_and_position(tmp_path, tiny_card, capsys):
    """2,000 flipped bytes in the middle: pedalboard decoded zeros there, exit 0."""
    good = _noise(tmp_path / "good.flac", 4.0, subtype="PCM_16")
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(np.arange(len(data) // 3, len(data) // 2), 2000, replace=False):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.flac"
    bad.write_bytes(bytes(data))
    assert _run(bad, tmp_path / "o.wav", "--model", tiny_card) == 1
    err = capsys.readouterr().err
    assert "bad.flac is corrupt" in err and " s)" in err and "after frame" in err
    assert not (tmp_path / "o.wav").exists()
    assert _run(good, tmp_path / "o.wav", "--model", tiny_card) == 0  # the check passes good


def test_empty_input_is_a_clear_error(tmp_path, tiny_card, capsys):
    src = tmp_path / "empty.wav"
    sf.write(src, np.zeros((0, 1), np.float32), 48000)
    assert _run(src, tmp_path / "o.wav", "--model", tiny_card) == 1
    err = capsys.readouterr().err
    assert "empty.wav holds no audio" in err and "RT factor" not in err
    assert not (tmp_path / "o.wav").exists()


def test_missing_output_folder_is_an_error_and_not_created(tmp_path, tiny_card, capsys):
    src = _noise(tmp_path / "in.wav")
    assert _run(src, tmp_path / "nope" / "o.wav", "--model", tiny_card) == 1
    err = capsys.readouterr().err
    assert "output folder" in err and "does not exist" in err and "mkdir -p" in err
    assert not (tmp_path / "nope").exists()
