"""The README's main job: the demo writes wavs + a spectrogram PNG and prints metrics."""
import numpy as np
import soundfile as sf

from rtbwe import demo, models
from rtbwe.weights import ModelLoadingError, read_card, save_model


def _tiny_card(tmp_path):
    cls, kwargs = models.build_kwargs("tiny")
    return save_model(models.build("tiny"), tmp_path / "tiny",
                      {"model_class": cls, "model_kwargs": kwargs, "sample_rate": 48000,
                       "cutoff_hz": 6000.0, "name": "tiny-test"})


def test_demo_with_a_given_model(tmp_path, capsys):
    card = _tiny_card(tmp_path)
    result = demo.run_demo(tmp_path / "out", model=str(card), block_size=1000, threads=1)
    out = capsys.readouterr().out
    assert "ΔSNR" in out and "RT factor" in out and "tiny-test" in out
    ref, sr = sf.read(str(tmp_path / "out" / "reference.wav"))
    ext, _ = sf.read(str(tmp_path / "out" / "extended.wav"))
    low, _ = sf.read(str(tmp_path / "out" / "input_6k.wav"))
    assert sr == 48000 and ref.shape == ext.shape == low.shape
    assert not np.allclose(ext, low)  # the (random) network changed the signal
    assert (tmp_path / "out" / "spectrograms.png").stat().st_size > 10_000
    assert np.isfinite(list(result.values())).all() and result["rt_factor"] > 0
    assert result["lsd_hf_in"] > result["lsd_in"] > 0


def test_demo_default_model(tmp_path, capsys):
    try:
        read_card("default")
    except ModelLoadingError:
        result = demo.run_demo(tmp_path / "out")
        assert result == {} and "no default model yet" in capsys.readouterr().out
        return
    result = demo.run_demo(tmp_path / "out", threads=1)
    assert result["snr_out_db"] > result["snr_in_db"]  # the shipped model improves the clip
    assert result["lsd_hf_out"] < result["lsd_hf_in"]
