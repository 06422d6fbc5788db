"""Experiment configs: one TOML file per experiment, loaded into a frozen dataclass.

Example (``training/configs/arunet-small-da-6k.toml``)::

    name = "arunet-small-da-6k"
    model = "arunet-small"
    augment = true
    cutoff_hz = 6000
    steps = 200000
    data = "corpus/v1"
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's recipe."""

    name: str = "run"
    model: str = "arunet-small"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: bool = True                 # DA: random Table I filter per segment
    augment_set: str = "table1"          # DA filters: table1 (paper) | table1+flat | table1+cheby2
    cutoff_hz: float = 6000.0
    cutoff_jitter: float = 0.0           # DA only: cutoff drawn in [c/(1+j), c(1+j)] per segment
    sample_rate: int = 48000
    data: str = "corpus/v1"
    data_kind: str = "auto"              # corpus | maestro | folder | auto
    steps: int = 200_000
    batch_size: int = 8
    segment_samples: int = 8192
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-2           # AdamW's decoupled weight decay
    restart_steps: int = 20_000          # cosine annealing with warm restarts
    lr_min: float = 1e-7
    spectral_loss_weight: float = 0.0    # optional multi-resolution STFT loss on top of MSE
    hf_loss_weight: float = 0.0          # optional MSE on the band above the cutoff
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    device: str = "auto"                 # auto | cpu | cuda
    val_every: int = 500
    val_clips: int = 16
    val_clip_seconds: float = 2.0
    checkpoint_every: int = 250
    log_every: int = 50
    max_track_seconds: float | None = None
    train_limit: int | None = None       # use only the first N training files (smoke tests)
    degradations: str = "cutoff"         # cutoff: filters at cutoff_hz (the paper) | wide: every
                                         # bandwidth, resamplers and codecs (training/degrade.py)
    extra_data: tuple[str, ...] = ()     # more datasets (e.g. corpus/real), each split by file
    data_workers: int = 1                # wide: background processes drawing batches
    init_from: str | None = None         # warm start from a model card (.json) when there is
                                         # no checkpoint yet, e.g. the shipped weights
    distill_from: str | None = None      # wide: a teacher card; the loss mixes its output in
    distill_weight: float = 0.5          # (training/distill.py): (1-w) target + w teacher
    stretch: tuple[float, ...] = ()      # cutoff task: (lowest, highest frequency factor,
                                         # copies): stretched copies of each training track,
                                         # what cutoff scaling hands the network (data.py)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(cfg: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
    if "extra_data" in cfg:
        cfg["extra_data"] = tuple(str(p) for p in cfg["extra_data"])
    if cfg.get("degradations", "cutoff") not in ("cutoff", "wide"):
        raise ValueError(f"degradations must be 'cutoff' or 'wide', got {cfg['degradations']!r}")
    if "stretch" in cfg:
        raw = cfg["stretch"]
        numbers = isinstance(raw, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        stretch = tuple(float(v) for v in raw) if numbers else None
        valid = stretch == () or (
            stretch is not None and len(stretch) == 3
            and 0.25 <= stretch[0] <= stretch[1] <= 4.0
            and stretch[2] == int(stretch[2]) and 1 <= stretch[2] <= 8)
        if not valid:
            raise ValueError("stretch is [lowest factor, highest factor, copies] with factors "
                             f"in [0.25, 4] and 1-8 copies, got {cfg['stretch']!r}")
        cfg["stretch"] = stretch
        if stretch and cfg.get("degradations") == "wide":
            raise ValueError("stretch is for the cutoff task (degradations = 'cutoff'), the "
                             "network that cutoff scaling runs")
    if "betas" in cfg:
        cfg["betas"] = tuple(float(b) for b in cfg["betas"])
    return cfg


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TOML file into :class:`TrainConfig`; ``overrides`` win over the file."""
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**_coerce(cfg))


def from_dict(cfg: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**_coerce(dict(cfg)))


def dump_toml(config: TrainConfig) -> str:
    """Minimal TOML writer for the flat config (no nested tables except model_kwargs)."""
    lines = []
    nested = []
    for key, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, dict):
            nested.append((key, value))
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    for key, table in nested:
        lines.append(f"\n[{key}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
