"""Weights on disk: ``NAME.safetensors`` tensors plus a ``NAME.json`` model card.

No pickle is ever loaded. The card holds the class name and constructor kwargs, the
sample rate and cutoff, the training config, a data manifest hash, test metrics and
the sha256 of the safetensors file, which :func:`load_model` verifies.

>>> net = load_model("default")          # the shipped model            # doctest: +SKIP
>>> net = load_model("path/to/run.json")  # or .safetensors, or the stem  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import models

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Registry of shipped weights: name -> stem inside WEIGHTS_DIR. The default sees the input's
# long-term spectrum (rtbwe.conditioning); arunet-small-6k is the paper's recipe without it.
SHIPPED = {"default": "arunet-small-cond-6k", "arunet-small-cond-6k": "arunet-small-cond-6k",
           "arunet-small-6k": "arunet-small-6k"}


class ModelLoadingError(RuntimeError):
    """A model file is missing, corrupt, truncated or does not match its card."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: nn.Module, stem: str | Path, card: dict[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json``. ``card`` must hold ``model_class`` and
    ``model_kwargs``; ``sha256`` and ``parameters`` are filled in here. Returns the card path."""
    from safetensors.torch import save_file

    for key in ("model_class", "model_kwargs", "sample_rate"):
        if key not in card:
            raise ValueError(f"model card needs {key!r}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = stem.with_suffix(".safetensors")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    card = {**card, "weights_file": weights_path.name, "sha256": sha256_file(weights_path),
            "parameters": models.count_parameters(model)}
    card_path = stem.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card_path


def resolve(name_or_path: str | Path) -> Path:
    """Path of the model card for a registered name, a ``.json``, a ``.safetensors`` or a stem."""
    key = str(name_or_path)
    if key in SHIPPED:
        card = WEIGHTS_DIR / f"{SHIPPED[key]}.json"
        if not card.exists():
            what = "no default model yet" if key == "default" else f"no shipped model {key!r}"
            raise ModelLoadingError(
                f"{what}: {card} is not in this install. Train one with "
                "`rtbwe-train fit` or pass model=<path to .json/.safetensors>.")
        return card
    path = Path(key)
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    elif path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    if not path.exists():
        raise ModelLoadingError(f"model card not found: {path} (known names: "
                                f"{', '.join(SHIPPED)}; or pass a .json/.safetensors path)")
    return path


def read_card(name_or_path: str | Path) -> dict[str, Any]:
    path = resolve(name_or_path)
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadingError(f"model card {path} is not valid JSON: {err}") from None
    card["_card_path"] = str(path)
    return card


def load_model(name_or_path: str | Path, map_location: str | torch.device = "cpu",
               verify: bool = True) -> nn.Module:
    """Load a model by registered name or path, in eval mode, with ``model.card`` attached.

    Raises :class:`ModelLoadingError` for a missing, corrupt, truncated or mismatched file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = read_card(name_or_path)
    card_path = Path(card["_card_path"])
    weights_path = card_path.with_name(card.get("weights_file", card_path.stem + ".safetensors"))
    if not weights_path.exists():
        raise ModelLoadingError(f"weights file missing: {weights_path}")
    if verify and "sha256" in card and sha256_file(weights_path) != card["sha256"]:
        raise ModelLoadingError(f"{weights_path} does not match the sha256 in {card_path}: the "
                                "file is corrupt or truncated, or belongs to another card")
    cls_name = card.get("model_class")
    if cls_name not in models.MODEL_CLASSES:
        raise ModelLoadingError(f"{card_path}: unknown model_class {cls_name!r}")
    try:
        model = models.MODEL_CLASSES[cls_name](**card.get("model_kwargs", {}))
    except TypeError as err:
        raise ModelLoadingError(f"{card_path}: model_kwargs do not fit {cls_name}: {err}") from None
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadingError(f"cannot read {weights_path}: {err}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelLoadingError(f"{weights_path} does not match {cls_name}"
                                f"({card.get('model_kwargs')}): {err}") from None
    model.eval()
    model.card = card  # type: ignore[attr-defined]
    return model
