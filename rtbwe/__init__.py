"""rtbwe: real-time audio bandwidth extension.

Band-limited audio in, full-band 48 kHz audio out::

    import rtbwe
    bwe = rtbwe.BandwidthExtender()          # the shipped default model
    y = bwe.process(x, 48000)                # x: float32 (channels, samples) or (samples,)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Everything loads on first use, so `import rtbwe` (and `rtbwe --help`) does not import torch.
_LAZY = {
    "load_model": "rtbwe.weights",
    "save_model": "rtbwe.weights",
    "ModelLoadingError": "rtbwe.weights",
    "BandwidthExtender": "rtbwe.processor",
    "extend": "rtbwe.processor",
    "Chain": "rtbwe.chain",
    "Delay": "rtbwe.chain",
    "LiveSession": "rtbwe.live",
    "models": "rtbwe.models",
    "filters": "rtbwe.filters",
    "metrics": "rtbwe.metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'rtbwe' has no attribute {name!r}")
