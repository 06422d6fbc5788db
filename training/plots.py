"""Figures: validation curves (the paper's Fig. 2) and spectrograms (Fig. 3)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Validation rows of a ``log.csv`` as columns."""
    rows = [r for r in csv.DictReader(open(path)) if r.get("split") == "validation"]
    cols: dict[str, np.ndarray] = {}
    for key in ("step", "seen_snr", "unseen_snr", "avg_snr", "seen_lsd", "unseen_lsd", "avg_lsd"):
        cols[key] = np.array([float(r[key]) for r in rows if r.get(key)], dtype=float)
    return cols


def plot_curves(logs: dict[str, str | Path], out_png: str | Path, title: str = "") -> Path:
    """Validation SNR and LSD (averaged over the seen and unseen filters) against steps."""
    plt = _pyplot()
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_spectrograms(panels: dict[str, np.ndarray], sample_rate: int, out_png: str | Path,
                      cutoff_hz: float | None = None, title: str = "") -> Path:
    """One log-power spectrogram per panel (each (samples,)), side by side, as Fig. 3."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    n_fft, hop = 2048, 512
    window = np.hanning(n_fft)
    for ax, (label, audio) in zip(axes, panels.items()):
        x = np.asarray(audio, dtype=np.float64)
        if len(x) < n_fft:
            x = np.pad(x, (0, n_fft - len(x)))
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
        power_db = 10 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-10).T
        extent = [0, len(x) / sample_rate, 0, sample_rate / 2000]
        ax.imshow(power_db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                  vmin=power_db.max() - 100, vmax=power_db.max())
        if cutoff_hz:
            ax.axhline(cutoff_hz / 1000, color="w", lw=0.6, ls="--")
        ax.set(title=label, xlabel="time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
