"""``rtbwe process`` batch mode, ``--subtype``, the thread default, and a fast ``--help``."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import cli, cli_process
from rtbwe.processor import BandwidthExtender


def _noise(path, seconds=0.4, rate=48000, channels=1, seed=0):
    x = 0.3 * np.random.default_rng(seed).standard_normal((int(rate * seconds), channels))
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


def test_a_folder_and_files_into_an_output_folder_with_one_model_load(tmp_path, tiny_card,
                                                                     monkeypatch, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    a = _noise(inputs / "a.wav", seed=1)
    _noise(inputs / "b.flac", rate=16000, channels=2, seed=2)
    (inputs / "notes.txt").write_text("not audio")
    c = _noise(tmp_path / "c.wav", seed=3)
    out = tmp_path / "out"
    out.mkdir()
    loads = []
    original = cli_process.load_extender
    monkeypatch.setattr(cli_process, "load_extender", lambda args: loads.append(1) or
                        original(args))
    assert cli.main(["process", str(inputs), str(c), str(out), "--model", tiny_card]) == 0
    assert len(loads) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav"]
    assert "3 of 3 files written" in capsys.readouterr().out
    x, _ = sf.read(a, dtype="float32")
    y, rate = sf.read(out / "a.wav", dtype="float32")
    np.testing.assert_allclose(y, BandwidthExtender(tiny_card).process(x, 48000), atol=1e-5)
    assert sf.info(out / "b.wav").channels == 2 and sf.info(out / "b.wav").frames == 19200
    # a second run refuses (nothing written), resumes with --skip-existing, replaces with -y
    before = (out / "a.wav").stat().st_mtime_ns
    assert cli.main(["process", str(inputs), str(c), str(out), "--model", tiny_card]) == 1
    assert "3 files" in capsys.readouterr().err
    assert cli.main(["process", str(inputs), str(out), "--skip-existing",
                     "--model", tiny_card]) == 0
    assert (out / "a.wav").stat().st_mtime_ns == before
    assert cli.main(["process", str(inputs), str(out), "-y", "--model", tiny_card]) == 0


def test_batch_refusals_before_any_work(tmp_path, tiny_card, capsys):
    a, b = _noise(tmp_path / "x.wav"), _noise(tmp_path / "x.flac")
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["process", str(a), str(b), str(out), "--model", tiny_card]) == 1
    assert "would both be written" in capsys.readouterr().err
    assert cli.main(["process", str(a), str(b), str(tmp_path / "none"), "--model",
                     tiny_card]) == 1
    assert "does not exist" in capsys.readouterr().err
    # input folder == output folder: x.wav -> x.wav is the input itself
    assert cli.main(["process", str(a), str(tmp_path), "-y", "--model", tiny_card]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_one_bad_file_does_not_stop_the_batch(tmp_path, tiny_card, capsys):
    good, bad = _noise(tmp_path / "good.wav"), tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["process", str(bad), str(good), str(out), "--model", tiny_card]) == 1
    captured = capsys.readouterr()
    assert "cannot read" in captured.err and "1 of 2 files written; failed:" in captured.out
    assert [p.name for p in out.iterdir()] == ["good.wav"]


@pytest.mark.parametrize("suffix, subtype, expected", [
    (".wav", None, "FLOAT"), (".wav", "PCM_16", "PCM_16"), (".wav", "PCM_24", "PCM_24"),
    (".flac", None, "PCM_24"), (".flac", "PCM_16", "PCM_16")])
def test_subtype(tmp_path, tiny_card, suffix, subtype, expected):
    src, dst = _noise(tmp_path / "in.wav"), tmp_path / f"out{suffix}"
    extra = ["--subtype", subtype] if subtype else []
    assert cli.main(["process", str(src), str(dst), "--model", tiny_card, *extra]) == 0
    assert sf.info(dst).subtype == expected


def test_subtype_that_does_not_fit_the_format_is_refused(tmp_path, tiny_card, capsys):
    src = _noise(tmp_path / "in.wav")
    for name in ("o.flac", "o.ogg"):
        assert cli.main(["process", str(src), str(tmp_path / name), "--subtype", "FLOAT",
                         "--model", tiny_card]) == 1
        assert "does not apply" in capsys.readouterr().err


def test_process_runs_one_thread_unless_told(tmp_path, tiny_card, capsys):
    src = _noise(tmp_path / "in.wav")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(["process", str(src), str(tmp_path / "a.wav"), "--model",
                         tiny_card]) == 0
        assert torch.get_num_threads() == 1 and "1 thread(s)" in capsys.readouterr().out
        assert cli.main(["process", str(src), str(tmp_path / "b.wav"), "--model", tiny_card,
                         "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2 and "2 thread(s)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_chain_example_writes_what_rtbwe_process_writes(tmp_path):
    """examples/chain_file.py and `rtbwe process` agree on the default wav format (float)."""
    sys.path.insert(0, "examples")
    try:
        import chain_file
    finally:
        sys.path.remove("examples")
    src = _noise(tmp_path / "in.wav")
    assert chain_file.main([str(src), str(tmp_path / "o.wav"), "--model", "identity"]) == 0
    assert sf.info(tmp_path / "o.wav").subtype == "FLOAT"


def test_help_and_version_answer_without_importing_torch():
    code = ("import sys, time; t = time.perf_counter(); from rtbwe import cli; "
            "p = cli.build_parser(); p.format_help(); "
            "[a.choices[c].format_help() for a in p._subparsers._group_actions "
            "for c in a.choices]; print(time.perf_counter() - t, "
            "sorted(m for m in ('torch', 'numba', 'pedalboard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]"   # the cause of a 10 s --help; timing is machine-dependent
    version = subprocess.run([sys.executable, "-m", "rtbwe", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("rtbwe ") and version.split()[1][0].isdigit()


def test_every_option_has_help_text():
    import argparse

    from rtbwe.training import cli as train_cli

    parsers = [cli.build_parser(), train_cli.build_parser()]
    missing = []
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_live_runs_one_thread_unless_told():
    from rtbwe import cli_live

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli_live.build_processor("identity", "cpu").engine.num_threads == 1
        assert torch.get_num_threads() == 1
        args = cli.build_parser().parse_args(["live", "--threads", "2"])
        assert args.threads == 2
        cli_live.build_processor("identity", "cpu", num_threads=args.threads)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_input_bandwidth_is_reported_once_known():
    class Estimated:
        input_bandwidth_hz = 6012.0

    assert cli_process.bandwidth_note(object()) == ""  # before issue 11's attribute exists
    assert cli_process.bandwidth_note(Estimated()) == "; input band-limited at about 6.0 kHz"

    class NearFull(Estimated):  # a card that adds no band above 17 kHz (ninth session)
        input_bandwidth_hz = 17900.0
        extension_gain = [[4500.0, 0.6], [17000.0, 0.2], [1e9, 0.0]]
        passband = "detected"
    assert cli_process.bandwidth_note(NearFull()) == (
        "; input band-limited at about 17.9 kHz (nothing is added above 17 kHz: passed through)")
    NearFull.input_bandwidth_hz = 16000.0
    assert cli_process.bandwidth_note(NearFull()) == "; input band-limited at about 16.0 kHz"


def test_skirt_boost_is_reported_by_a_real_stream():
    """`rtbwe process`'s note says when a gentle roll-off was boosted back (rtbwe.skirt),
    from a real processor's stats, and says nothing of it for a resampled input."""
    import soxr
    from scipy import signal as sps

    from rtbwe.filters import lowpass
    from torch import nn

    rng = np.random.default_rng(3)
    noise = sps.lfilter(*sps.butter(1, 500, fs=48000), rng.standard_normal(3 * 48000))
    noise = (0.05 * noise / noise.std()).astype(np.float32)
    bwe = BandwidthExtender(nn.Identity(), sample_rate=48000, num_threads=1)
    bwe._band_lock = {**bwe._band_lock, "skirt_eq": True}
    bwe.process(lowpass(noise, 48000, 6000, "butter", 6).astype(np.float32), 48000)
    note = cli_process.bandwidth_note(bwe)
    assert note.startswith("; input band-limited at about 6.0 kHz; its gentle roll-off "
                           "boosted back up to "), note
    assert 7.0 < float(note.rsplit(" ", 2)[-2]) < 10.0
    bwe.process(soxr.resample(soxr.resample(noise, 48000, 16000), 16000, 48000)
                .astype(np.float32), 48000)
    assert "boosted" not in cli_process.bandwidth_note(bwe)
