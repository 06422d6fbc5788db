"""A model card's settings of the detected-band lock, checked as untrusted input.

A card (JSON beside the weights) may carry ``extension_gain``, ``max_added_ratio``,
``rolloff_gate_db``, ``skirt_eq`` and ``skirt_model``
(:class:`rtbwe.passband.DetectedBandLock`), and ``cutoff_scaling`` (:mod:`rtbwe.rescale`).
Each is validated here before the lock is built; anything malformed falls back to the
library's default rather than failing or building something unchecked.
"""
from __future__ import annotations

import numpy as np

from .passband import DEFAULT_MAX_ADDED_RATIO

MAX_EXTENSION_GAIN = 4.0


def extension_gains(value) -> list:
    """A card's ``extension_gain`` (a number, or ``[[up_to_hz, gain], ...]`` with rising
    edges) as a checked table; anything malformed or non-finite means gain 1 (untrusted
    input), and gains are clipped to [0, MAX_EXTENSION_GAIN]."""
    def gain(g) -> float:
        return float(min(max(float(g), 0.0), MAX_EXTENSION_GAIN))
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return [[float("inf"), gain(value)]]
        table = [[float(edge), gain(g)] for edge, g in value][:32]
        edges = [edge for edge, _ in table]
        if table and all(np.isfinite(g) for _, g in table) and edges == sorted(edges) \
                and not any(np.isnan(edges)):
            return table
    except (TypeError, ValueError):
        pass
    return [[float("inf"), 1.0]]


def max_added_ratio(value) -> float | None:
    """A card's ``max_added_ratio`` (the detected-band lock's level cap, see
    :class:`rtbwe.passband.DetectedBandLock`): a positive finite number, or None for no cap;
    anything else (untrusted input) means the library's default."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and \
            np.isfinite(value) and value > 0:
        return float(value)
    return DEFAULT_MAX_ADDED_RATIO


def rolloff_gate_db(value) -> tuple[float, float] | None:
    """A card's ``rolloff_gate_db`` (the lock's optional roll-off gate): ``[full_db, off_db]``,
    finite, ``full_db > off_db``; anything else (absent, or malformed) means no gate."""
    try:
        full_db, off_db = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    valid = bool(np.isfinite([full_db, off_db]).all()) and full_db > off_db
    return (full_db, off_db) if valid else None


def skirt_eq(value) -> bool:
    """A card's ``skirt_eq`` (boost a gentle filter's skirt, :mod:`rtbwe.skirt`): only a JSON
    ``true`` turns it on."""
    return value is True


def skirt_model(value) -> str | None:
    """A card's ``skirt_model``: the name of a registered learned skirt estimate
    (:data:`rtbwe.skirt_model.SKIRT_MODELS`) that sets the boost in place of the passband's
    trend, or ``"template-fit"`` (:mod:`rtbwe.skirt_shape`: the trend rule, deeper where the
    skirt fits a filter's shape); anything else (absent, or not a registered name) means
    the trend rule."""
    from .skirt_model import SKIRT_MODELS
    from .skirt_shape import TEMPLATE_FIT

    return (value if isinstance(value, str) and (value in SKIRT_MODELS or value == TEMPLATE_FIT)
            else None)


def cutoff_scaling(value) -> dict | None:
    """A card's ``cutoff_scaling`` (:mod:`rtbwe.rescale`): ``{"model": a name in
    SCALED_MODELS, "target_hz": 1000-20000, "max_length_ratio": 1-4, "gain": 0-4}``, finite
    numbers, where ``gain`` may also be a table ``[[up_to_hz, gain], ...]`` (rising edges,
    each gain 0-4, at most 32 rows) as a card's ``extension_gain``, and optionally
    ``"min_cutoff_hz"`` (0-20000; the lowest cutoff scaled, by default
    ``rtbwe.rescale.MIN_SCALED_RATIO`` x ``target_hz``), ``"keep_boost"`` (a bool: the
    skirt boost also on scaled windows; by default off), ``"max_shelf_drop_db"`` and
    ``"max_edge_drop_db"`` (0-200: no scaling where the spectrum above the edge ends in a
    cliff, or is one, steeper than this, :func:`rtbwe.skirt.steepest_fall_db`; by default
    no such test); anything else (absent, or malformed) means the engine's network runs
    every window as it is."""
    from .rescale import MAX_LENGTH_RATIO, SCALED_MODELS

    if not isinstance(value, dict) or value.get("model") not in SCALED_MODELS:
        return None
    gain = value.get("gain", 1.0)
    numbers = {key: value.get(key, default) for key, default in
               (("target_hz", None), ("max_length_ratio", 2.0))}
    if not all(_finite_number(v) for v in numbers.values()):
        return None
    if not (1000.0 <= numbers["target_hz"] <= 20000.0 and 1.0 <= numbers["max_length_ratio"]
            <= MAX_LENGTH_RATIO):
        return None
    if _finite_number(gain):
        if not 0.0 <= gain <= MAX_EXTENSION_GAIN:
            return None
        gain = float(gain)
    else:
        gain = _gain_table(gain)
        if gain is None:
            return None
    optional = {}  # only what the card sets, so older cards' settings compare as before
    if "min_cutoff_hz" in value:
        if not (_finite_number(value["min_cutoff_hz"])
                and 0.0 <= value["min_cutoff_hz"] <= 20000.0):
            return None
        optional["min_cutoff_hz"] = float(value["min_cutoff_hz"])
    if "keep_boost" in value:
        if not isinstance(value["keep_boost"], bool):
            return None
        optional["keep_boost"] = value["keep_boost"]
    for key in ("max_shelf_drop_db", "max_edge_drop_db"):
        if key in value:
            if not (_finite_number(value[key]) and 0.0 < value[key] <= 200.0):
                return None
            optional[key] = float(value[key])
    return {"model": value["model"], **{k: float(v) for k, v in numbers.items()},
            "gain": gain, **optional}


def _finite_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def _gain_table(value) -> list | None:
    """``[[up_to_hz, gain], ...]``: 1-32 rows of finite numbers, edges rising, gains in
    [0, MAX_EXTENSION_GAIN]; None when anything is otherwise (no clipping: a scaled band's
    table that is not as written is not used at all)."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 32:
        return None
    table = []
    for row in value:
        if not (isinstance(row, (list, tuple)) and len(row) == 2):
            return None
        edge, gain = row
        if not ((_finite_number(edge) or edge == float("inf")) and _finite_number(gain)
                and 0.0 <= gain <= MAX_EXTENSION_GAIN):
            return None
        table.append([float(edge), float(gain)])
    edges = [edge for edge, _ in table]
    return table if edges == sorted(edges) and len(set(edges)) == len(edges) else None


def lock_settings(card, skip_full_band: bool = True) -> dict:
    """A card (dict, or anything else: no settings) -> the lock's keyword arguments."""
    card = card if isinstance(card, dict) else {}
    return {"gain": extension_gains(card.get("extension_gain", 1.0)),
            "max_added_ratio": max_added_ratio(card.get("max_added_ratio",
                                                        DEFAULT_MAX_ADDED_RATIO)),
            "rolloff_gate_db": rolloff_gate_db(card.get("rolloff_gate_db")),
            "skirt_eq": skirt_eq(card.get("skirt_eq")),
            "skirt_model": skirt_model(card.get("skirt_model")),
            "cutoff_scaling": cutoff_scaling(card.get("cutoff_scaling")),
            "skip_network": bool(skip_full_band)}
