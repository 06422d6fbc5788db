"""``rtbwe process`` on tiny synthetic files, and ``rtbwe bench`` smoke test."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import cli, cli_process, models
from rtbwe.processor import BandwidthExtender
from helpers import random_tiny


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory):
    import rtbwe

    net = random_tiny(0)
    stem = tmp_path_factory.mktemp("weights") / "tiny"
    return rtbwe.save_model(net, stem, {"model_class": "ARUNet", "sample_rate": 48000,
                                        "model_kwargs": models.build_kwargs("tiny")[1]})


def _tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)  # (n, ch)


@pytest.mark.parametrize("rate, channels, suffix", [(16000, 1, ".wav"), (44100, 2, ".flac"),
                                                    (8000, 2, ".wav"), (48000, 1, ".flac"),
                                                    (22050, 1, ".ogg")])
def test_process_resamples_to_48k_with_the_same_duration(tmp_path, tiny_card, rate, channels,
                                                         suffix, capsys):
    src, dst = tmp_path / f"in{suffix}", tmp_path / "out.wav"
    sf.write(src, _tone(rate, 0.5, channels), rate)
    assert cli.main(["process", str(src), str(dst), "--model", str(tiny_card)]) == 0
    out, out_rate = sf.read(dst, always_2d=True)
    assert out_rate == 48000 and out.shape == (round(0.5 * 48000), channels)
    assert "RT factor" in capsys.readouterr().out
    assert np.abs(out).max() > 0.1


def test_process_output_is_the_latency_compensated_offline_result(tmp_path, tiny_card):
    """Streaming through the file and dropping latency_samples == process(reset=True)."""
    x = (0.3 * np.random.default_rng(0).standard_normal((30000, 2))).astype(np.float32)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    assert cli.main(["process", str(src), str(dst), "--model", str(tiny_card), "--quiet"]) == 0
    out, _ = sf.read(dst, dtype="float32")
    offline = BandwidthExtender(str(tiny_card)).process(np.ascontiguousarray(x.T), 48000)
    np.testing.assert_allclose(out.T, offline, atol=1e-5)


def test_keep_below_hz_option_locks_the_passband(tmp_path, tiny_card, capsys):
    x = (0.3 * np.random.default_rng(1).standard_normal((20000, 1))).astype(np.float32)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    assert cli.main(["process", str(src), str(dst), "--model", str(tiny_card), "--quiet",
                     "--keep-below-hz", "4000"]) == 0
    out, _ = sf.read(dst, dtype="float32")
    locked = BandwidthExtender(str(tiny_card), keep_below_hz=4000).process(x[:, 0], 48000)
    np.testing.assert_allclose(out, locked, atol=1e-5)
    assert not np.allclose(out, BandwidthExtender(str(tiny_card)).process(x[:, 0], 48000),
                           atol=1e-3)
    assert cli.main(["process", str(src), str(dst), "--model", str(tiny_card), "-y",
                     "--keep-below-hz", "30000"]) == 1
    assert "Nyquist" in capsys.readouterr().err


def test_identity_through_a_file_is_aligned(tmp_path):
    """An impulse stays where it was: latency is compensated exactly (float wav, 48 kHz)."""
    x = np.zeros(20000, np.float32)
    x[12345] = 0.9
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    bwe = BandwidthExtender(torch.nn.Identity())
    result = cli_process.extend_file(src, dst, bwe)
    out, _ = sf.read(dst, dtype="float32")
    assert result["samples"] == out.shape[0] == 20000
    assert int(np.argmax(np.abs(out))) == 12345
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_progress_bar_on_a_terminal_and_no_carriage_returns_in_a_log(tmp_path, capsys,
                                                                      monkeypatch, tiny_card):
    src = tmp_path / "in.wav"
    sf.write(src, _tone(16000, 1.0, 1), 16000)
    monkeypatch.setattr(cli_process, "PROGRESS_MIN_SECONDS", 0.5)
    assert cli.main(["process", str(src), str(tmp_path / "a.wav"), "--model",
                     str(tiny_card)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "%" not in err  # stderr is not a terminal here
    monkeypatch.setattr(type(sys.stderr), "isatty", lambda self: True, raising=False)
    assert cli.main(["process", str(src), str(tmp_path / "b.wav"), "--model",
                     str(tiny_card)]) == 0
    err = capsys.readouterr().err
    assert "100%" in err and "s audio" in err


def test_missing_file_is_a_clear_error(tmp_path, tiny_card, capsys):
    code = cli.main(["process", str(tmp_path / "nope.wav"), str(tmp_path / "o.wav"),
                     "--model", str(tiny_card)])
    assert code == 1
    assert "input file not found" in capsys.readouterr().err


def test_corrupt_file_is_a_clear_error(tmp_path, tiny_card, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    code = cli.main(["process", str(bad), str(tmp_path / "o.wav"), "--model", str(tiny_card)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot read" in err and "bad.wav" in err and "Traceback" not in err


def test_rate_outside_8_to_192_khz_is_refused(tmp_path, tiny_card, capsys):
    src = tmp_path / "low.wav"
    sf.write(src, _tone(4000, 0.2, 1), 4000)
    assert cli.main(["process", str(src), str(tmp_path / "o.wav"), "--model",
                     str(tiny_card)]) == 1
    assert "8000-192000 Hz" in capsys.readouterr().err


def test_default_model_error_says_what_to_do(tmp_path, capsys):
    from rtbwe.weights import SHIPPED, WEIGHTS_DIR

    if (WEIGHTS_DIR / f"{SHIPPED['default']}.json").exists():
        pytest.skip("default weights are shipped in this install")
    src = tmp_path / "in.wav"
    sf.write(src, _tone(16000, 0.2, 1), 16000)
    assert cli.main(["process", str(src), str(tmp_path / "o.wav")]) == 1
    assert "no default model yet" in capsys.readouterr().err


def test_bench_prints_the_benchmark_figures(capsys):
    assert cli.main(["bench", "--models", "tiny", "--backends", "eager", "--threads", "1",
                     "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    for column in ("p50 ms", "p99 ms", "RT", "latency ms", "speed-up"):
        assert column in out
    assert "21.31" in out  # 1023 samples at 48 kHz
