"""Figures: validation curves (the paper's Fig. 2); spectrograms (Fig. 3) live in
:mod:`rtbwe.plotting` because the demo needs them too."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rtbwe.plotting import plot_spectrograms  # noqa: F401  (re-exported)
from rtbwe.plotting import pyplot, save_figure


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Validation rows of a ``log.csv`` as columns."""
    rows = [r for r in csv.DictReader(open(path)) if r.get("split") == "validation"]
    cols: dict[str, np.ndarray] = {}
    for key in ("step", "seen_snr", "unseen_snr", "avg_snr", "seen_lsd", "unseen_lsd", "avg_lsd"):
        cols[key] = np.array([float(r[key]) for r in rows if r.get(key)], dtype=float)
    return cols


def plot_curves(logs: dict[str, str | Path], out_png: str | Path, title: str = "") -> Path:
    """Validation SNR and LSD (averaged over the seen and unseen filters) against steps."""
    plt = pyplot()
    fig, (ax_snr, ax_lsd) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, path in logs.items():
        cols = read_log(path)
        if not len(cols["step"]):
            continue
        ax_snr.plot(cols["step"], cols["avg_snr"], label=label)
        ax_lsd.plot(cols["step"], cols["avg_lsd"], label=label)
    ax_snr.set(xlabel="step", ylabel="validation SNR (dB)", title="SNR, seen+unseen avg")
    ax_lsd.set(xlabel="step", ylabel="validation LSD", title="LSD, seen+unseen avg")
    for ax in (ax_snr, ax_lsd):
        ax.grid(alpha=0.3)
    ax_snr.legend(fontsize=7)
    return save_figure(fig, out_png, dpi=110, title=title)
