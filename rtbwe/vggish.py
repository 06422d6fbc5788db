"""VGGish embeddings for the paper's VGG distance, from a user-supplied weights file.

The weights cannot be downloaded here, so :func:`load_vggish` reads a state dict in
torchvggish's format (``features.*``, ``embeddings.*`` and optionally the PCA parameters
``pproc._pca_matrix`` / ``pproc._pca_means``) with ``torch.load(weights_only=True)``, or a
``.safetensors`` file with the same keys.

Front end (as torchvggish's ``vggish_input``): mono, resampled to 16 kHz, 25 ms Hann
windows every 10 ms (FFT 512), 64 HTK-mel bands 125–7500 Hz, ``log(mel + 0.01)``,
non-overlapping examples of 96 frames -> (examples, 1, 96, 64) -> 128-d embeddings.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import torch
from scipy import signal
from torch import nn

VGGISH_RATE = 16000
WINDOW_SAMPLES, HOP_SAMPLES, FFT_SIZE = 400, 160, 512
MEL_BANDS, MEL_LOW_HZ, MEL_HIGH_HZ = 64, 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96


class VGGish(nn.Module):
    """torchvggish's VGG: 4 conv stages then 3 fully connected layers -> (examples, 128)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True),
                                        nn.Linear(4096, 4096), nn.ReLU(True),
                                        nn.Linear(4096, 128), nn.ReLU(True))
        self.register_buffer("pca_matrix", torch.empty(0))
        self.register_buffer("pca_means", torch.empty(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (examples, 1, 96, 64) log-mel -> (examples, 128)."""
        x = self.features(x)
        x = x.transpose(1, 3).transpose(1, 2).contiguous()  # torchvggish's flatten order
        x = self.embeddings(x.view(x.size(0), -1))
        if self.pca_matrix.numel():
            x = (x - self.pca_means.reshape(1, -1)) @ self.pca_matrix.T
        return x


def load_vggish(weights_path: str | Path | None) -> VGGish:
    """Build :class:`VGGish` and load a torchvggish state dict without unpickling code."""
    if not weights_path:
        raise FileNotFoundError(
            "vggish_distance needs VGGish weights in torchvggish's state-dict format "
            "(e.g. vggish-10086976.pth); they cannot be downloaded here, pass weights_path=")
    path = Path(weights_path)
    if not path.exists():
        raise FileNotFoundError(f"VGGish weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ValueError(f"cannot read VGGish weights {path}: {err}") from None
    model = VGGish()
    pca = {"pproc._pca_matrix": "pca_matrix", "pproc._pca_means": "pca_means"}
    for src, dst in pca.items():
        if src in state:
            setattr(model, dst, state.pop(src).float())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("pca_")]
    if missing or unexpected:
        raise ValueError(f"{path} is not a torchvggish state dict: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return model.eval()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz) / 700.0)


def mel_matrix(num_spectrogram_bins: int = FFT_SIZE // 2 + 1) -> np.ndarray:
    """(spectrogram_bins, 64) triangular HTK-mel weights, as vggish's mel_features."""
    nyquist = VGGISH_RATE / 2
    bins_mel = _hz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), MEL_BANDS + 2)
    weights = np.empty((num_spectrogram_bins, MEL_BANDS))
    for i in range(MEL_BANDS):
        lo, centre, hi = edges[i:i + 3]
        lower = (bins_mel - lo) / (centre - lo)
        upper = (hi - bins_mel) / (hi - centre)
        weights[:, i] = np.maximum(0.0, np.minimum(lower, upper))
    weights[0, :] = 0.0
    return weights


def log_mel_examples(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(samples,) or (channels, samples) -> (examples, 1, 96, 64) float32 log-mel patches."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64)).mean(axis=0)
    if sample_rate != VGGISH_RATE:
        g = gcd(VGGISH_RATE, int(sample_rate))
        x = signal.resample_poly(x, VGGISH_RATE // g, int(sample_rate) // g)
    min_len = WINDOW_SAMPLES + HOP_SAMPLES * (EXAMPLE_FRAMES - 1)
    if len(x) < min_len:
        x = np.pad(x, (0, min_len - len(x)))
    n_frames = 1 + (len(x) - WINDOW_SAMPLES) // HOP_SAMPLES
    idx = np.arange(WINDOW_SAMPLES)[None, :] + HOP_SAMPLES * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES)
    magnitude = np.abs(np.fft.rfft(x[idx] * window, FFT_SIZE))
    log_mel = np.log(magnitude @ mel_matrix() + LOG_OFFSET)
    n_examples = n_frames // EXAMPLE_FRAMES
    patches = log_mel[: n_examples * EXAMPLE_FRAMES].reshape(n_examples, EXAMPLE_FRAMES, MEL_BANDS)
    return patches[:, None].astype(np.float32)


def embed(model: VGGish, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Audio -> (examples, 128) embeddings."""
    with torch.inference_mode():
        return model(torch.from_numpy(log_mel_examples(audio, sample_rate))).numpy()


_CACHE: dict[str, VGGish] = {}


def vggish_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                    weights_path: str | Path | None) -> float:
    """Mean absolute difference between the VGGish embeddings of reference and estimate."""
    if np.shape(reference) != np.shape(estimate):
        raise ValueError(f"reference and estimate shapes differ: {np.shape(reference)} vs "
                         f"{np.shape(estimate)}")
    key = str(weights_path)
    if key not in _CACHE:
        _CACHE[key] = load_vggish(weights_path)
    model = _CACHE[key]
    return float(np.mean(np.abs(embed(model, reference, sample_rate)
                                 - embed(model, estimate, sample_rate))))
