"""Output level (issue 13): clipping is counted and warned about; --limit keeps peaks down."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import cli, cli_process
from rtbwe.level import ClipCounter, PeakLimiter, clip_warning
from rtbwe.processor import BandwidthExtender

SR = 48000
LIMIT = 10 ** (-1 / 20)


def loud(seconds: float = 1.0, channels: int = 2, peak: float = 1.2) -> np.ndarray:
    """(channels, n) float32: a quiet tone with bursts up to ``peak``."""
    t = np.arange(int(SR * seconds)) / SR
    x = 0.2 * np.sin(2 * np.pi * 330 * t)
    x[SR // 4:SR // 4 + 2000] *= peak / 0.2
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)]).astype(np.float32)


def test_clip_counter_counts_samples_above_full_scale():
    x = loud()
    counter = ClipCounter()
    for start in range(0, x.shape[1], 4096):
        counter.update(x[:, start:start + 4096])
    assert counter.clipped_samples == int(np.count_nonzero(np.abs(x) > 1.0)) > 0
    assert counter.peak == pytest.approx(float(np.abs(x).max()))
    assert "above full scale" in clip_warning(counter.clipped_samples, counter.total_samples,
                                              counter.peak)
    assert clip_warning(0, x.size, 0.5) is None


@pytest.mark.parametrize("block", [1, 65, 4096])
def test_peak_limiter_bounds_peaks_and_leaves_quiet_audio_alone(block):
    x = loud(peak=3.0)
    limiter = PeakLimiter(SR)
    y = np.concatenate([limiter.process(x[:, i:i + block]) for i in range(0, x.shape[1], block)],
                       axis=1)
    assert np.abs(y).max() <= LIMIT + 1e-6
    np.testing.assert_array_equal(y[:, :SR // 4], x[:, :SR // 4])  # before the burst: untouched
    tail = slice(SR // 4 + 2000 + SR // 2, None)  # 5 release time constants after it
    np.testing.assert_allclose(y[:, tail], x[:, tail], rtol=1e-2)
    whole = PeakLimiter(SR).process(x)
    np.testing.assert_allclose(y, whole, atol=1e-7)  # block size does not matter


def test_process_counts_and_warns_about_clipping_then_limit_removes_it(tmp_path):
    src = tmp_path / "loud.wav"
    x = loud()
    sf.write(src, x.T, SR, subtype="FLOAT")
    bwe = BandwidthExtender(torch.nn.Identity())
    result = cli_process.extend_file(src, tmp_path / "out.flac", bwe)
    assert result["clipped_samples"] == int(np.count_nonzero(np.abs(x) > 1.0)) > 0
    warnings = cli_process.output_warnings(result, tmp_path / "out.flac")
    assert len(warnings) == 1 and str(result["clipped_samples"]) in warnings[0]
    limited = cli_process.extend_file(src, tmp_path / "limited.wav", bwe, limit_db=-1.0)
    out, _ = sf.read(tmp_path / "limited.wav", dtype="float32")
    assert limited["clipped_samples"] == 0 and limited["limited_frames"] > 0
    assert np.abs(out).max() <= LIMIT + 1e-6
    assert cli_process.output_warnings(limited, tmp_path / "limited.wav") == []


def test_cli_warns_on_stderr_and_accepts_limit(tmp_path, capsys):
    import rtbwe
    from rtbwe import models
    from helpers import random_tiny

    card = rtbwe.save_model(random_tiny(0), tmp_path / "tiny",
                            {"model_class": "ARUNet", "sample_rate": SR,
                             "model_kwargs": models.build_kwargs("tiny")[1]})
    src = tmp_path / "loud.wav"
    sf.write(src, loud(peak=2.0).T, SR, subtype="FLOAT")
    assert cli.main(["process", str(src), str(tmp_path / "a.wav"), "--model", str(card),
                     "--quiet"]) == 0
    assert "above full scale" in capsys.readouterr().err
    assert cli.main(["process", str(src), str(tmp_path / "b.wav"), "--model", str(card),
                     "--quiet", "--limit"]) == 0
    assert "above full scale" not in capsys.readouterr().err
    out, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    assert np.abs(out).max() <= LIMIT + 1e-6
