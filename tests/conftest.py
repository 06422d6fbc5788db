"""Shared test settings: small thread counts (CI has 2 cores) and fixed seeds."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
