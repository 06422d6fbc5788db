"""Spectrogram figures (the paper's Fig. 3 style), used by the demo and the reproduction."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_png: str | Path, dpi: int = 100, title: str = "") -> Path:
    """Title, lay out, write ``fig`` to ``out_png`` (creating its folder) and close it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    pyplot().close(fig)
    return out_png


def plot_spectrograms(panels: dict[str, np.ndarray], sample_rate: int, out_png: str | Path,
                      cutoff_hz: float | None = None, title: str = "") -> Path:
    """One log-power spectrogram per panel (each (samples,)), side by side, as Fig. 3."""
    plt = pyplot()
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
    return save_figure(fig, out_png, dpi=100, title=title)
