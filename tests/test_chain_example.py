"""examples/chain_file.py: block-by-block file processing equals the whole-buffer chain."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chain_file.py"


def load_example():
    spec = importlib.util.spec_from_file_location("chain_file", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("block_size", [300, 4096])
def test_example_streams_a_file_like_the_whole_buffer_chain(tmp_path, block_size):
    example = load_example()
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal((20000, 2))).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    frames = example.process_file(str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                                  example.build_chain("identity"), block_size)
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert (frames, rate, y.shape) == (20000, 48000, x.shape)
    whole = example.build_chain("identity")(x.T.copy(), 48000)
    np.testing.assert_allclose(y.T, whole, atol=1e-4)
