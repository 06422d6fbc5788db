"""Geometries on the degradation matrix: modes, per-row differences, the eval CLI options."""
import math

import pytest

from rtbwe import processor
from rtbwe.training import cli, modes


def test_named_modes_are_the_processor_geometries():
    assert (modes.parse_mode("default").window_samples,
            modes.parse_mode("default").hop_samples) == (1024, 768)
    assert (modes.parse_mode("hop-1/2").window_samples,
            modes.parse_mode("hop-1/2").hop_samples) == (1024, 512)
    assert (modes.parse_mode("hop-3/4").window_samples,
            modes.parse_mode("hop-3/4").hop_samples) == (1024, 768)
    low = modes.parse_mode("low-latency")
    assert low.options() == pytest.approx({"window_ms": processor.LOW_LATENCY_WINDOW_MS,
                                           "hop_ms": processor.LOW_LATENCY_HOP_MS})
    assert low.latency_ms == pytest.approx(1000 * 447 / 48000)
    assert modes.parse_mode("960/480").as_dict() == {
        "label": "960/480", "window_samples": 960, "hop_samples": 480, "latency_ms": 19.979}
    for bad in ("fast", "512/1024", "10/0"):
        with pytest.raises(ValueError):
            modes.parse_mode(bad)


def _row(name, dsnr, worse=0.0, clips=3):
    return {"name": name, "dsnr_db": dsnr, "worse_fraction": worse, "clips": clips}


def test_row_differences_and_the_worst_one():
    ref = [_row("full band", 150.0), _row("butter-6 6 kHz", 1.0), _row("gsm", -0.1, 0.5),
           _row("mp3 64 kbps", float("nan"), clips=0)]
    other = [_row("full band", 120.0), _row("butter-6 6 kHz", 0.75, 0.25), _row("gsm", 0.0),
             _row("mp3 64 kbps", float("nan"), clips=0)]
    diff = modes.row_differences(ref, other)
    assert [d["diff_db"] for d in diff[1:3]] == pytest.approx([-0.25, 0.1])
    assert diff[1]["worse_diff"] == 0.25 and diff[2]["worse_diff"] == -0.5
    # the full-band row (output vs input SNR) and rows without clips do not count
    assert modes.worst_difference_db(diff) == pytest.approx(0.25)
    table = modes.differences_markdown("a", "b", diff)
    assert "| butter-6 6 kHz | 3 | +1.00 | +0.75 | -0.25 | **no** | +25% |" in table
    assert "| gsm | 3 | -0.10 | +0.00 | +0.10 | yes | -50% |" in table
    assert "Largest |difference|" in table and "0.25 dB" in table
    assert math.isnan(modes.worst_difference_db(diff[:1]))


def test_eval_matrix_geometry_options():
    parse = cli.build_parser().parse_args
    one = cli._matrix_modes(parse(["eval", "--matrix", "--low-latency"]))
    assert [(m.window_samples, m.hop_samples) for m in one] == [(448, 224)]
    one = cli._matrix_modes(parse(["eval", "--matrix", "--hop-ms", "10.6666667"]))
    assert [(m.window_samples, m.hop_samples) for m in one] == [(1024, 512)]
    assert [(m.window_samples, m.hop_samples) for m in cli._matrix_modes(
        parse(["eval", "--matrix"]))] == [(1024, 768)]
    several = cli._matrix_modes(parse(["eval", "--matrix", "--modes", "hop-1/2", "hop-3/4",
                                       "low-latency"]))
    assert [m.hop_samples for m in several] == [512, 768, 224]
    with pytest.raises(SystemExit):
        cli._matrix_modes(parse(["eval", "--matrix", "--modes", "default", "--low-latency"]))


def test_code_version_names_a_commit():
    version = modes.code_version()
    assert len(version["commit"]) == 40 or version["commit"] == "unknown"
    assert isinstance(version["modified"], list)


def test_ship_failures_name_lost_rows_and_new_harm():
    ref = [_row("full band", 150.0), _row("butter-6 6 kHz", 1.0), _row("gsm", -0.1, 0.5),
           _row("mp3 32 kbps", 0.2)]
    same = [dict(r) for r in ref]
    assert modes.ship_failures(ref, same) == []
    other = [_row("full band", 90.0, 0.25), _row("butter-6 6 kHz", 0.79),
             _row("gsm", -0.3, 0.75), _row("mp3 32 kbps", 0.1, 0.2)]
    failures = modes.ship_failures(ref, other)
    assert failures == ["full band: 25% of clips worse (reference none)",
                        "butter-6 6 kHz: ΔSNR -0.21 dB",
                        "mp3 32 kbps: 20% of clips worse (reference none)"]


def test_compare_two_matrix_files(tmp_path, capsys):
    import json

    ref = [_row("full band", 150.0), _row("butter-6 6 kHz", 1.0)]
    other = [_row("full band", 150.0), _row("butter-6 6 kHz", 0.9)]
    for name, rows in (("a", ref), ("b", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": {name: rows}}))
    out = tmp_path / "t.md"
    assert modes.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                       "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "### b minus a" in text and "-0.10 | yes" in text
    assert "May replace the reference: yes" in text


def test_eval_clips_can_start_later_in_each_file(tmp_path):
    """--clip-offset: clips start that many seconds into each file (here the second tone of
    a file that changes from 1 to 2 kHz at 1.5 s); a file too short for a 1 s clip there is
    left out; a negative offset is refused with a message."""
    import json

    import numpy as np
    import pytest
    import soundfile as sf

    from rtbwe.training import cli

    sr = 48000
    t = np.arange(int(1.5 * sr)) / sr
    tones = np.concatenate([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 2000 * t)])
    sf.write(tmp_path / "long.flac", (0.3 * tones).astype(np.float32), sr)
    sf.write(tmp_path / "short.flac", (0.3 * tones[: 2 * sr]).astype(np.float32), sr)
    (tmp_path / "manifest.json").write_text(json.dumps({"pieces": [
        {"file": "long.flac", "split": "test"}, {"file": "short.flac", "split": "test"}]}))

    def peak_hz(clip):
        return float(np.argmax(np.abs(np.fft.rfft(clip))) * sr / len(clip))

    first = cli._split_clips([str(tmp_path)], "test", 1.5, 2)
    later = cli._split_clips([str(tmp_path)], "test", 1.5, 2, offset_seconds=1.5)
    assert [peak_hz(c) for c in first] == pytest.approx([1000, 1000], abs=2)
    assert len(later) == 1 and later[0].size == int(1.5 * sr)  # short.flac: 0.5 s left
    assert peak_hz(later[0]) == pytest.approx(2000, abs=2)
    with pytest.raises(SystemExit, match="--clip-offset"):
        cli.main(["eval", "--matrix", "--data", str(tmp_path), "--clip-offset", "-1"])
