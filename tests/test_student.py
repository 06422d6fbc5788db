"""The shipped cheaper student ``arunet-small-half-wide`` (issue 14, training/distill.py):
its card, ONNX equal to eager, streaming equal to offline on the default path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtbwe import filters, models
from rtbwe.processor import BandwidthExtender
from rtbwe.weights import load_model

RATE = 48000
NAME = "arunet-small-half-wide"


@pytest.fixture(scope="module")
def student():
    return load_model(NAME).eval()


def test_card_is_the_half_width_student_of_the_default(student):
    card = student.card
    assert card["model_kwargs"]["filters"] == [8, 16, 16, 32, 32]
    assert card["model_kwargs"]["bottleneck_filters"] == 32
    assert card["model_kwargs"]["condition_bands"] == load_model("default").condition_bands
    assert card["training"]["distill_from"].endswith("arunet-small-wide.json")
    assert card["training"]["degradations"] == "wide"
    assert (models.count_parameters(student) * 3
            < models.count_parameters(load_model("arunet-small-wide")))
    assert "extension_gain" in card and "max_added_ratio" in card  # calibrated at export


def test_default_and_fast_name_the_student_trained_with_a_spectral_term(student):
    """Since the ninth session the default is a half-width student too: the shipped student
    trained on with a log-spectral term (training/configs/arunet-small-half-wide-spectral3.toml);
    `fast` names the same weights (since the seventeenth session without the default's cutoff
    scaling: from 5 kHz then, from 3 kHz since the eighteenth; the skirt boost's template fit
    since the twenty-first), and the earlier ones stay under their names."""
    default, fast = load_model("default"), load_model("fast")
    assert default.card["sha256"] == fast.card["sha256"] != student.card["sha256"]
    assert fast.card["name"] == "arunet-small-half-wide-spectral"
    assert default.card["name"] == "default-template-fit"
    assert default.card["skirt_model"] == "template-fit"
    assert default.card["cutoff_scaling"]["min_cutoff_hz"] == 3000.0
    assert default.card["cutoff_scaling"]["max_shelf_drop_db"] == 30.0
    assert "cutoff_scaling" not in fast.card
    assert default.card["model_kwargs"] == student.card["model_kwargs"]
    assert default.card["training"]["spectral_loss_weight"] > 0
    assert default.card["training"]["init_from"].endswith("arunet-small-half-wide.json")
    assert default.card["continued_from"]["sha256"] == student.card["sha256"]
    assert BandwidthExtender("fast").extension_gain == default.card["extension_gain"]
    assert load_model("arunet-small-wide").card["sha256"] != default.card["sha256"]


def test_onnx_equals_eager_on_its_windows(student):
    pytest.importorskip("onnxruntime")
    from rtbwe import engine

    eng = engine.InferenceEngine(student, 1024, device="cpu", backend="onnx", num_threads=1)
    assert eng.backend == "onnx" and eng.fallback_reason is None
    rng = np.random.default_rng(0)
    for rows in (1, 2):
        frames = (0.1 * rng.standard_normal((rows, 1024))).astype(np.float32)
        conditions = rng.random((rows, eng.condition_bands)).astype(np.float32)
        out = np.empty_like(frames)
        eng.run(frames, rows, out, conditions)
        with torch.inference_mode():
            expected = student(torch.from_numpy(frames)[:, None],
                               torch.from_numpy(conditions)).numpy()[:, 0]
        assert np.abs(expected - frames).max() > 1e-3
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_streaming_equals_offline_by_name():
    bwe = BandwidthExtender(NAME, num_threads=1)
    rng = np.random.default_rng(1)
    t = np.arange(RATE) / RATE
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(RATE)
    x = filters.lowpass(x, RATE, 6000.0).astype(np.float32)  # the network has a band to add
    offline = bwe.process(x, RATE)
    outs, at = [], 0
    for size in (1, 700, 768, 5000, *[333] * 60):
        outs.append(bwe.process(x[at:at + size], RATE, reset=False))
        at += size
    outs.append(bwe.process(x[at:], RATE, reset=False))
    stream = np.concatenate(outs)
    latency = bwe.latency_samples
    assert np.abs(offline - x).max() > 1e-4  # it does change the input
    np.testing.assert_allclose(stream[latency:], offline[:-latency], atol=1e-5)
