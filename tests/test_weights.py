"""Weights: safetensors + JSON card round trip, no pickle, clear errors."""
import json

import pytest
import torch

import rtbwe
from rtbwe import models
from rtbwe.weights import ModelLoadingError, load_model, read_card, save_model


def _save_tiny(tmp_path):
    net = models.build("tiny")
    cls, kwargs = models.build_kwargs("tiny")
    card = save_model(net, tmp_path / "tiny", {"model_class": cls, "model_kwargs": kwargs,
                                               "sample_rate": 48000, "cutoff_hz": 6000.0})
    return net, card


def test_round_trip_by_json_safetensors_and_stem(tmp_path):
    net, card_path = _save_tiny(tmp_path)
    x = torch.randn(1, 1, 500)
    for ref in (card_path, tmp_path / "tiny.safetensors", tmp_path / "tiny"):
        loaded = load_model(ref)
        assert not loaded.training
        with torch.inference_mode():
            assert torch.equal(loaded(x), net.eval()(x))
        assert loaded.card["cutoff_hz"] == 6000.0 and len(loaded.card["sha256"]) == 64


def test_corrupt_truncated_and_mismatched_files(tmp_path):
    _, card_path = _save_tiny(tmp_path)
    weights = tmp_path / "tiny.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(ModelLoadingError, match="truncated"):
        load_model(card_path)
    with pytest.raises(ModelLoadingError, match="cannot read"):
        load_model(card_path, verify=False)
    flipped = bytearray(blob)
    flipped[-1] ^= 1  # same size, other content
    weights.write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadingError, match="sha256"):
        load_model(card_path)
    weights.write_bytes(blob)
    card = json.loads(card_path.read_text())
    card["model_kwargs"]["filters"] = [8, 8, 8, 8, 8]  # does not fit the tensors
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadingError, match="does not match"):
        load_model(card_path)
    card_path.write_text("{not json")
    with pytest.raises(ModelLoadingError, match="not valid JSON"):
        load_model(card_path)
    with pytest.raises(ModelLoadingError, match="not found"):
        load_model(tmp_path / "missing.json")


def test_weights_file_has_no_pickle(tmp_path):
    _save_tiny(tmp_path)
    head = (tmp_path / "tiny.safetensors").read_bytes()[:8]
    header_len = int.from_bytes(head, "little")
    header = json.loads((tmp_path / "tiny.safetensors").read_bytes()[8:8 + header_len])
    assert all("dtype" in v for k, v in header.items() if k != "__metadata__")


def test_default_model_is_registered():
    try:
        card = read_card("default")
    except ModelLoadingError as err:
        assert "no default model yet" in str(err)
        pytest.skip("no default weights in this checkout")
    net = rtbwe.load_model("default")
    assert card["sample_rate"] == 48000 and card["cutoff_hz"] == 6000.0
    assert models.count_parameters(net) == card["parameters"]


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_model_name_is_a_clear_error(name):
    """Not pathlib's "PosixPath('.') has an empty name"."""
    with pytest.raises(ModelLoadingError, match="empty model name"):
        load_model(name)
