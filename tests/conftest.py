"""Shared test settings: small thread counts (CI has 2 cores) and fixed seeds."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory):
    """A saved model card + safetensors of the random tiny ARUNet (path of the .json)."""
    import rtbwe
    from helpers import random_tiny
    from rtbwe import models

    stem = tmp_path_factory.mktemp("weights") / "tiny"
    return str(rtbwe.save_model(random_tiny(0), stem, {
        "model_class": "ARUNet", "sample_rate": 48000,
        "model_kwargs": models.build_kwargs("tiny")[1]}))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
