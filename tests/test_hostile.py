"""Hostile input, table-driven (issue 13): model files, arguments, misuse.

Each row is one attack that once crashed, hung, ate gigabytes or passed silently. Every
row must now fail fast with the library's own error and a sentence that names the problem.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

import rtbwe
from rtbwe import engine, models
from rtbwe.weights import ModelLoadingError, load_model, save_model

# -- model cards and safetensors files ---------------------------------------------------------


def _save(tmp_path: Path, name: str = "tiny-cond", scale: float = 1.0,
          fill: float | None = None, only: str = "") -> Path:
    """Save a registered model, its parameters named ``only...`` filled and/or scaled."""
    torch.manual_seed(0)
    net = models.build(name)
    with torch.no_grad():
        for key, p in net.named_parameters():
            if not key.startswith(only):
                continue
            if fill is not None:
                p.fill_(fill)
            p.mul_(scale)
    cls, kwargs = models.build_kwargs(name)
    return save_model(net, tmp_path / "net", {"model_class": cls, "model_kwargs": kwargs,
                                              "sample_rate": 48000})


def _card(**changes) -> Callable[[Path], None]:
    """Mutation: set top-level card keys."""
    def mutate(card_path: Path) -> None:
        card = json.loads(card_path.read_text())
        card.update(changes)
        card_path.write_text(json.dumps(card))
    return mutate


def _kwargs(**changes) -> Callable[[Path], None]:
    """Mutation: set model_kwargs entries (a callable gets the old value)."""
    def mutate(card_path: Path) -> None:
        card = json.loads(card_path.read_text())
        for key, value in changes.items():
            old = card["model_kwargs"].get(key)
            card["model_kwargs"][key] = value(old) if callable(value) else value
        card_path.write_text(json.dumps(card))
    return mutate


def _write(text: str) -> Callable[[Path], None]:
    return lambda card_path: card_path.write_text(text)


def _link_weights_to(target: str) -> Callable[[Path], None]:
    def mutate(card_path: Path) -> None:
        weights = card_path.with_suffix(".safetensors")
        weights.unlink()
        os.symlink(target, weights)
    return mutate


def _weights_dir(card_path: Path) -> None:
    weights = card_path.with_suffix(".safetensors")
    weights.unlink()
    weights.mkdir()


def _card_dir(card_path: Path) -> None:
    card_path.unlink()
    card_path.mkdir()


def _header(edit: Callable[[dict], None], extra: bytes = b"") -> Callable[[Path], None]:
    """Mutation: rewrite the safetensors header (the card's sha256 is dropped)."""
    def mutate(card_path: Path) -> None:
        weights = card_path.with_suffix(".safetensors")
        blob = weights.read_bytes()
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + size])
        edit(header)
        raw = json.dumps(header).encode()
        weights.write_bytes(len(raw).to_bytes(8, "little") + raw + blob[8 + size:] + extra)
        _card(sha256=None)(card_path)
    return mutate


def _header_length(length: int) -> Callable[[Path], None]:
    def mutate(card_path: Path) -> None:
        weights = card_path.with_suffix(".safetensors")
        blob = weights.read_bytes()
        weights.write_bytes(length.to_bytes(8, "little") + blob[8:])
    return mutate


def _drop_sha(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    card.pop("sha256")
    card_path.write_text(json.dumps(card))


def _first_tensor(key: str, value) -> Callable[[dict], None]:
    def edit(header: dict) -> None:
        name = next(k for k in header if k != "__metadata__")
        header[name][key] = value
    return edit


# (id, mutation of a valid tiny-cond card + file, expected message)
CARD_ATTACKS = [
    ("card-is-a-list", _write("[1, 2, 3]"), "must be a JSON object"),
    ("card-is-a-string", _write('"ARUNet"'), "must be a JSON object"),
    ("card-is-a-directory", _card_dir, "not a regular file"),
    ("weights-file-int", _card(weights_file=123), "plain file name"),
    ("weights-file-dotdot", _card(weights_file=".."), "plain file name"),
    ("weights-file-parent", _card(weights_file="../net.safetensors"), "plain file name"),
    ("weights-file-absolute", _card(weights_file="/dev/zero"), "plain file name"),
    ("weights-symlink-dev-zero", _link_weights_to("/dev/zero"), "not a regular file"),
    ("weights-is-a-directory", _weights_dir, "not a regular file"),
    ("unknown-class", _card(model_class="os.system"), "unknown model_class"),
    ("class-not-a-string", _card(model_class=["ARUNet"]), "unknown model_class"),
    ("kwargs-a-list", _card(model_kwargs=[1]), "model_kwargs must be a JSON object"),
    ("kwargs-unknown-key", _kwargs(evil=3), "do not fit"),
    ("film-hidden-25M", _kwargs(film_hidden=25_000_000), "plausible size"),
    ("film-hidden-500k", _kwargs(film_hidden=500_000), "does not match"),
    ("100k-levels", _kwargs(filters=[4] * 100_000, kernel_sizes=[9] * 100_000), "entries"),
    ("filters-1e9", _kwargs(filters=lambda f: [1e9, *f[1:]]), "plausible size"),
    ("filters-negative", _kwargs(filters=lambda f: [-4, *f[1:]]), "plausible size"),
    ("filters-zero", _kwargs(filters=lambda f: [0, *f[1:]]), "plausible size"),
    ("filters-odd", _kwargs(filters=lambda f: [5, *f[1:]]), "even|does not match"),
    ("filters-nested", _kwargs(filters=[[4]] * 5), "not a number"),
    ("filters-inf", _kwargs(bottleneck_filters=float("inf")), "not finite|not valid JSON"),
    ("dropout-5", _kwargs(dropout=5), "probability"),
    ("dropout-negative", _kwargs(dropout=-0.1), "probability"),
    ("dropout-string", _kwargs(dropout="0.1"), "probability"),
    ("sample-rate-string", _card(sample_rate="48000"), "sample_rate"),
    ("sample-rate-zero", _card(sample_rate=0), "sample_rate"),
    ("sha256-int", _card(sha256=123), "sha256"),
    ("header-length-huge", _header_length(1 << 40), "header length"),
    ("header-not-json", _header_length(3), "not JSON|truncated"),
    ("header-bad-shape", _header(_first_tensor("shape", [-1])), "invalid entry"),
    ("header-bad-dtype", _header(_first_tensor("dtype", "OBJECT")), "invalid entry"),
    ("trailing-bytes", _header(lambda h: None, extra=b"\0" * 64), "extra data"),
    ("truncated-no-sha", lambda p: (_drop_sha(p), p.with_suffix(".safetensors").write_bytes(
        p.with_suffix(".safetensors").read_bytes()[:-100])), "truncated"),
]


@pytest.mark.parametrize("mutate, message", [row[1:] for row in CARD_ATTACKS],
                         ids=[row[0] for row in CARD_ATTACKS])
def test_hostile_model_files_raise_model_loading_error(tmp_path, mutate, message):
    card_path = _save(tmp_path)
    load_model(card_path)  # the unmodified file loads
    mutate(card_path)
    started = time.perf_counter()
    with pytest.raises(ModelLoadingError, match=message):
        load_model(card_path)
    assert time.perf_counter() - started < 10.0  # no memory bomb, no endless hash


WEIGHT_ATTACKS = [  # (id, save options, expected message)
    ("all-nan", dict(fill=math.nan), "NaN/Inf"),
    ("all-inf", dict(fill=math.inf), "NaN/Inf"),
    ("scaled-1e30", dict(scale=1e30), "NaN/Inf|louder"),
    ("output-conv-scaled-1e4", dict(scale=1e4, only="out."), "louder"),
]


@pytest.mark.parametrize("options, message", [row[1:] for row in WEIGHT_ATTACKS],
                         ids=[row[0] for row in WEIGHT_ATTACKS])
def test_broken_weights_are_refused(tmp_path, options, message):
    card_path = _save(tmp_path, "tiny", **options)
    with pytest.raises(ModelLoadingError, match=message):
        load_model(card_path)
    with pytest.raises(ModelLoadingError, match=message):  # and through the processor
        rtbwe.BandwidthExtender(card_path)


def test_shipped_models_pass_the_probe():
    from rtbwe.weights import PROBE_MAX_GAIN_DB, probe_model

    for name in ("default", "arunet-small-6k"):
        try:
            net = load_model(name)
        except ModelLoadingError:
            pytest.skip("no shipped weights in this checkout")
        assert probe_model(net) < PROBE_MAX_GAIN_DB - 30  # a wide margin below the limit


# -- TorchScript files: code, with metadata that must still be checked --------------------------


class SpinsForward(nn.Module):
    """Spins ``iterations`` times (about 15 us each) before returning its input."""

    def __init__(self, iterations: int):
        super().__init__()
        self.iterations = iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i < self.iterations:
            x = x * 1.0
            i += 1
        return x


class NanForward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


def _script(tmp_path: Path, module: nn.Module, meta) -> Path:
    path = tmp_path / "model.pt"
    with engine.quiet_torchscript():
        torch.jit.save(torch.jit.script(module), str(path),
                       _extra_files={"rtbwe.json": meta if isinstance(meta, str)
                                     else json.dumps(meta)})
    return path


GOOD_META = {"window_samples": 1024, "sample_rate": 48000, "condition_bands": 0}
TORCHSCRIPT_ATTACKS = [  # (id, module, metadata, expected message)
    ("meta-list", nn.Identity(), [1], "must be a JSON object"),
    ("meta-not-json", nn.Identity(), "{oops", "not JSON"),
    ("meta-window-string", nn.Identity(), {**GOOD_META, "window_samples": "1024"},
     "window_samples"),
    ("meta-rate-negative", nn.Identity(), {**GOOD_META, "sample_rate": -1}, "sample_rate"),
    ("meta-bands-huge", nn.Identity(), {**GOOD_META, "condition_bands": 10**9},
     "condition_bands"),
    ("nan-output", NanForward(), GOOD_META, "NaN/Inf"),
    ("endless-forward", SpinsForward(200_000), GOOD_META, "did not process"),
]


@pytest.mark.parametrize("module, meta, message", [row[1:] for row in TORCHSCRIPT_ATTACKS],
                         ids=[row[0] for row in TORCHSCRIPT_ATTACKS])
def test_hostile_torchscript_files(tmp_path, module, meta, message):
    path = _script(tmp_path, module, meta)
    started = time.perf_counter()
    with pytest.raises(ModelLoadingError, match=message):
        engine.load_torchscript(path, probe_timeout_s=0.5)
    assert time.perf_counter() - started < 5.0


def test_plain_torchscript_file_loads(tmp_path):
    module, meta = engine.load_torchscript(_script(tmp_path, nn.Identity(), GOOD_META))
    assert meta == GOOD_META


# -- arguments and input to the library --------------------------------------------------------

SR = 48000


@pytest.fixture(scope="module")
def identity_bwe():
    return rtbwe.BandwidthExtender(nn.Identity(), sample_rate=SR)


def _noise(channels: int = 1, samples: int = 4800, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, samples))).astype(np.float32)


ARGUMENT_ATTACKS = [  # (id, call(identity_bwe), exception, expected message)
    ("extend-rate-inf", lambda b: rtbwe.extend(_noise(), math.inf, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-nan", lambda b: rtbwe.extend(_noise(), math.nan, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-zero", lambda b: rtbwe.extend(_noise(), 0, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-negative", lambda b: rtbwe.extend(_noise(), -1, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-1", lambda b: rtbwe.extend(_noise(), 1, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-1e9", lambda b: rtbwe.extend(_noise(), 1e9, nn.Identity()),
     ValueError, "8000 to 192000"),
    ("extend-rate-string", lambda b: rtbwe.extend(_noise(), "48000", nn.Identity()),
     ValueError, "8000 to 192000"),
    ("buffer-size-none", lambda b: b.process(_noise(), SR, buffer_size=None),
     ValueError, "buffer_size"),
    ("buffer-size-zero-stream", lambda b: b.process(_noise(), SR, buffer_size=0, reset=False),
     ValueError, "buffer_size"),
    ("buffer-size-float", lambda b: b.process(_noise(), SR, buffer_size=512.5),
     ValueError, "buffer_size"),
    ("complex-input", lambda b: b.process(_noise().astype(np.complex64), SR),
     ValueError, "complex64"),
    ("chain-complex-input", lambda b: rtbwe.Chain([rtbwe.Delay(1)]).process(
        _noise().astype(np.complex64), SR), ValueError, "complex64"),
    ("chain-buffer-size-none", lambda b: rtbwe.Chain([rtbwe.Delay(1)]).process(
        _noise(), SR, buffer_size=None), ValueError, "buffer_size"),
    ("chain-same-extender-twice", lambda b: rtbwe.Chain([b, rtbwe.Delay(2), b]),
     ValueError, "same BandwidthExtender object"),
    ("live-block-zero", lambda b: rtbwe.live.LiveSession(b, SR, 0),
     ValueError, "block_frames"),
    ("live-channels-zero", lambda b: rtbwe.live.LiveSession(b, SR, 256, channels=0),
     ValueError, "channels"),
    ("live-buffer-blocks-zero", lambda b: rtbwe.live.LiveSession(b, SR, 256, buffer_blocks=0),
     ValueError, "buffer_blocks"),
]


@pytest.mark.parametrize("call, error, message", [row[1:] for row in ARGUMENT_ATTACKS],
                         ids=[row[0] for row in ARGUMENT_ATTACKS])
def test_hostile_arguments_raise_clear_errors(identity_bwe, call, error, message):
    import rtbwe.live  # noqa: F401  (the live rows)

    started = time.perf_counter()
    with pytest.raises(error, match=message):
        call(identity_bwe)
    assert time.perf_counter() - started < 10.0


def test_chain_scales_int16_like_the_extender(identity_bwe):
    x16 = (_noise(2) * 32767).astype(np.int16)
    direct = identity_bwe.process(x16, SR)
    chained = rtbwe.Chain([identity_bwe]).process(x16, SR)
    np.testing.assert_allclose(chained, direct, atol=1e-6)
    assert 0.05 < np.sqrt(np.mean(chained ** 2)) < 0.2  # scaled to [-1, 1), not 3000


def test_one_extender_in_two_live_chains_is_refused():
    bwe = rtbwe.BandwidthExtender(nn.Identity(), sample_rate=SR)
    first = rtbwe.Chain([bwe])
    with pytest.raises(ValueError, match="already in another live Chain"):
        rtbwe.Chain([rtbwe.Delay(1), bwe])
    del first  # once the first chain is gone, the extender is free again
    import gc

    gc.collect()
    rtbwe.Chain([bwe])


class Sleepy(nn.Module):
    """Identity whose forward, once armed, signals ``entered`` and sleeps ``sleep_s``."""

    def __init__(self, sleep_s: float):
        super().__init__()
        import threading

        self.sleep_s, self.armed, self.entered = sleep_s, False, threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            self.entered.set()
            time.sleep(self.sleep_s)
        return x


@pytest.mark.parametrize("second_call", ["offline", "stream", "reset"])
def test_concurrent_use_of_one_extender_raises_and_keeps_the_stream(second_call):
    import threading

    net = Sleepy(0.3)  # eager: an exported graph would not run the Python forward
    bwe = rtbwe.BandwidthExtender(net, sample_rate=SR, backend="eager", skip_full_band=False)
    x = _noise(1, 48000)  # full band: the network runs only with skip_full_band=False
    net.armed = True
    results: dict[str, np.ndarray] = {}
    streamer = threading.Thread(target=lambda: results.update(
        y=bwe.process(x, SR, reset=False)))
    streamer.start()
    assert net.entered.wait(5.0)
    calls = {"offline": lambda: bwe.process(x, SR), "stream": lambda: bwe.process(
        x, SR, reset=False), "reset": bwe.reset}
    with pytest.raises(RuntimeError, match="another thread"):
        calls[second_call]()
    streamer.join()
    net.armed = False
    expected = rtbwe.BandwidthExtender(nn.Identity(), sample_rate=SR).process(x, SR, reset=False)
    np.testing.assert_allclose(results["y"], expected, atol=1e-6)


def test_one_long_streamed_block_is_batched_by_buffer_size():
    bwe = rtbwe.BandwidthExtender(nn.Identity(), sample_rate=SR)
    x = _noise(2, 5 * SR)
    y = bwe.process(x, SR, buffer_size=4096, reset=False)
    per_batch = 2 * (4096 // bwe.hop_samples + 1)
    assert bwe.stats.largest_batch <= per_batch  # was all 938 windows at once
    assert bwe._stream.capacity <= 4096           # buffers sized by buffer_size, not the block
    small = rtbwe.BandwidthExtender(nn.Identity(), sample_rate=SR)
    reference = np.concatenate([small.process(x[:, i:i + 1000], SR, reset=False)
                                for i in range(0, x.shape[1], 1000)], axis=1)
    np.testing.assert_allclose(y, reference, atol=1e-6)
