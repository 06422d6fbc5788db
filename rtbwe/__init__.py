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

from .weights import ModelLoadingError, load_model, save_model  # noqa: E402

# Heavier parts load on first use so `import rtbwe` stays fast.
_LAZY = {
    "BandwidthExtender": "rtbwe.processor",
    "extend": "rtbwe.processor",
    "Chain": "rtbwe.chain",
    "Delay": "rtbwe.chain",
    "LiveSession": "rtbwe.live",
    "models": "rtbwe.models",
    "filters": "rtbwe.filters",
    "metrics": "rtbwe.metrics",
}

__all__ = ["__version__", "load_model", "save_model", "ModelLoadingError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'rtbwe' has no attribute {name!r}")
