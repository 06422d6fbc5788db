"""BandwidthExtender: exact latency, streaming == offline for every block partition, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import rtbwe
from rtbwe import models
from rtbwe.processor import BandwidthExtender, extend
from helpers import random_tiny

RATE = 48000


@pytest.fixture(scope="module")
def tiny_bwe() -> BandwidthExtender:
    # passband="free": these tests check the windowed path itself, so the network must change
    # the whole band (the detected-band lock would keep full-band noise as it is)
    return BandwidthExtender(random_tiny(0), num_threads=1, passband="free")


@pytest.fixture(scope="module")
def identity_bwe() -> BandwidthExtender:
    return BandwidthExtender(nn.Identity(), num_threads=1)


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _stream(bwe: BandwidthExtender, x: np.ndarray, blocks: list[int]) -> np.ndarray:
    bwe.reset()
    outs, pos = [], 0
    for size in blocks:
        block = x[..., pos:pos + size]
        out = bwe.process(block, RATE, reset=False)
        assert out.shape == block.shape and out.dtype == np.float32
        outs.append(out)
        pos += size
    return np.concatenate(outs, axis=-1)


# --- exactness with the identity model --------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (700,), (960,), (5000,), (1, 4321), (2, 10000)])
def test_identity_offline_returns_the_input(identity_bwe, shape):
    x = _noise(shape)
    y = identity_bwe.process(x, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("blocks", [[1] * 30 + [3000], [65] * 40, [8193, 1, 65], [480] * 10])
@pytest.mark.parametrize("channels", [1, 2])
def test_identity_streaming_is_the_input_delayed_by_latency(identity_bwe, blocks, channels):
    x = _noise((channels, sum(blocks)), seed=len(blocks))
    y = _stream(identity_bwe, x, blocks)
    latency = identity_bwe.latency_samples
    assert latency == identity_bwe.window_samples - 1
    np.testing.assert_array_equal(y[:, :latency], 0.0)
    np.testing.assert_allclose(y[:, latency:], x[:, :-latency], atol=1e-5)


@pytest.mark.parametrize("window_ms, hop_ms", [(20, 10), (10, 2.5), (21.3333, 10), (5, 5)])
@pytest.mark.parametrize("block", [1, 64, 65, 480, 8193])
def test_impulse_comes_out_at_exactly_latency_samples(window_ms, hop_ms, block):
    """pedalboard's test_latency_compensation, for our processor."""
    bwe = BandwidthExtender(nn.Identity(), window_ms=window_ms, hop_ms=hop_ms)
    total = 3 * bwe.window_samples + 2 * block
    impulse_at = bwe.window_samples + 17
    x = np.zeros(total, np.float32)
    x[impulse_at] = 1.0
    stream = _stream(bwe, x, [block] * (total // block) + [total % block] * bool(total % block))
    assert int(np.argmax(np.abs(stream))) == impulse_at + bwe.latency_samples
    assert bwe.latency_samples == bwe.window_samples - 1
    offline = bwe.process(x, RATE)
    assert int(np.argmax(np.abs(offline))) == impulse_at
    np.testing.assert_allclose(offline, x, atol=1e-5)


# --- streaming == offline with a real network ---------------------------------------------

block_sequences = st.tuples(
    st.permutations([1, 65, 8193]),
    st.lists(st.integers(1, 1500), max_size=4),
    st.integers(0, 700),  # a run of 1-sample blocks, so hop boundaries fall inside it
    st.sampled_from([1, 2]),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(block_sequences)
def test_streaming_equals_offline_shifted_for_any_partition(tiny_bwe, case):
    required, extra, ones, channels, seed = case
    rng = np.random.default_rng(seed)
    blocks = [*required, *extra]
    blocks = [blocks[i] for i in rng.permutation(len(blocks))]
    at = int(rng.integers(0, len(blocks) + 1))
    blocks[at:at] = [1] * ones
    x = 0.3 * _noise((channels, sum(blocks)), seed=seed)
    offline = tiny_bwe.process(x, RATE)
    stream = _stream(tiny_bwe, x, blocks)
    latency = tiny_bwe.latency_samples
    assert np.abs(offline - x).max() > 1e-2  # the network really changes the signal
    np.testing.assert_allclose(stream[:, latency:], offline[:, :-latency], atol=1e-5)
    np.testing.assert_array_equal(stream[:, :latency], 0.0)


def test_offline_is_causal_up_to_the_latency(tiny_bwe):
    """Output sample t of the offline path only depends on input up to t + latency."""
    x = _noise((1, 6000), seed=3)
    cut = 3000
    later_changed = x.copy()
    later = cut + tiny_bwe.latency_samples
    later_changed[:, later:] = _noise((1, 6000 - later), seed=4)
    a, b = tiny_bwe.process(x, RATE), tiny_bwe.process(later_changed, RATE)
    np.testing.assert_allclose(a[:, :cut + 1], b[:, :cut + 1], atol=1e-6)
    assert np.abs(a[:, cut + 1:] - b[:, cut + 1:]).max() > 1e-3


def test_buffer_size_changes_batching_not_the_result(tiny_bwe):
    x = _noise((2, 9000), seed=5)
    np.testing.assert_allclose(tiny_bwe.process(x, RATE, buffer_size=480),
                               tiny_bwe.process(x, RATE, buffer_size=65536), atol=1e-5)


class _BatchRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, ...]] = []

    def forward(self, x):
        self.batches.append(tuple(x.shape))
        return x


def test_ready_windows_of_all_channels_run_as_one_batch():
    recorder = _BatchRecorder()  # eager: an exported graph would not call forward
    bwe = BandwidthExtender(recorder, window_ms=20, hop_ms=10, backend="eager",
                            skip_full_band=False)  # white noise is full band
    recorder.batches.clear()
    bwe.process(_noise((2, 8193)), RATE, reset=False)
    frames = (8193 - 480) // 480 + 1  # (480 zeros + 8193 samples - 960) // 480 + 1
    assert recorder.batches == [(2 * frames, 1, 960)]
    assert bwe.stats.largest_batch == 2 * frames and bwe.stats.batches >= 1
    recorder.batches.clear()
    bwe.process(_noise((2, 100)), RATE, reset=False)  # not enough for a new window
    assert recorder.batches == []


def test_reset_starts_the_stream_from_silence(tiny_bwe):
    x = _noise((2, 3000), seed=6)
    first = _stream(tiny_bwe, x, [700, 2300])
    tiny_bwe.process(_noise((2, 5000), seed=7), RATE, reset=False)
    second = _stream(tiny_bwe, x, [700, 2300])  # _stream calls reset()
    np.testing.assert_array_equal(first, second)


# --- bad input ------------------------------------------------------------------------------

def test_int16_and_float64_are_converted(identity_bwe):
    pcm = (np.arange(-2000, 2000, dtype=np.int16) * 8)
    np.testing.assert_allclose(identity_bwe.process(pcm, RATE), pcm / 32768.0, atol=1e-5)
    x64 = _noise((2, 3000)).astype(np.float64)
    y = identity_bwe.process(x64, RATE)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x64, atol=1e-5)


@pytest.mark.parametrize("audio, sample_rate, message", [
    (np.zeros(100, np.complex64), RATE, "pass float32"),
    (np.zeros((2, 2, 100), np.float32), RATE, r"\(samples,\) or \(channels, samples\)"),
    (np.zeros((4800, 2), np.float32), RATE, r"pass audio\.T"),
    ([0.0, 1.0], RATE, "np.asarray"),
    (np.zeros(100, np.float32), 16000, "resample the input to 48000 Hz"),
])
def test_bad_input_says_what_to_pass(identity_bwe, audio, sample_rate, message):
    with pytest.raises(ValueError, match=message):
        identity_bwe.process(audio, sample_rate)


def test_nonfinite_offline_names_the_first_bad_sample(identity_bwe):
    x = _noise((2, 5000))
    x[1, 1234] = np.inf
    x[0, 4000] = np.nan
    with pytest.raises(ValueError, match=r"NaN/Inf at sample 1234 \(channel 1\)"):
        identity_bwe.process(x, RATE)


def test_nonfinite_streaming_is_zeroed_counted_and_forgotten(tiny_bwe):
    # RMS 0.1 (-20 dBFS): inside the networks' level range, so the network's input gain
    # (rtbwe.streaming.network_gains, from the long-term level, which remembers the zeroed
    # burst for seconds) stays 1 and only the windows that held the burst may differ
    x = 0.1 * _noise((2, 8000), seed=8)
    dirty = x.copy()
    dirty[0, 2000:2010] = np.nan
    dirty[1, 2005] = -np.inf
    zeroed = np.nan_to_num(dirty, nan=0.0, posinf=0.0, neginf=0.0)
    before = tiny_bwe.stats.nonfinite_input_samples
    got = _stream(tiny_bwe, dirty, [500] * 16)
    assert tiny_bwe.stats.nonfinite_input_samples - before == 11
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _stream(tiny_bwe, zeroed, [500] * 16), atol=1e-6)
    clean = _stream(tiny_bwe, x, [500] * 16)
    assert np.abs(got - clean).max() > 1e-3  # the burst did change the output for a while
    clean_again = 2010 + 2 * tiny_bwe.window_samples  # bad samples have left every window
    np.testing.assert_allclose(got[:, clean_again:], clean[:, clean_again:], atol=1e-6)


def test_changing_channels_mid_stream_needs_reset(identity_bwe):
    identity_bwe.reset()
    identity_bwe.process(_noise((2, 100)), RATE, reset=False)
    with pytest.raises(ValueError, match="call reset"):
        identity_bwe.process(_noise((1, 100)), RATE, reset=False)
    identity_bwe.process(_noise((1, 100)), RATE)  # reset=True is always fine


def test_default_geometry_is_1024_over_768_at_48k(identity_bwe):
    assert (identity_bwe.window_samples, identity_bwe.hop_samples) == (1024, 768)
    assert identity_bwe.latency_samples == 1023
    assert abs(identity_bwe.latency_ms - 21.3125) < 1e-9


def test_window_and_hop_arguments_are_checked():
    with pytest.raises(ValueError, match="hop_ms <= window_ms"):
        BandwidthExtender(nn.Identity(), window_ms=10, hop_ms=20)
    bwe = BandwidthExtender(nn.Identity(), window_ms=40, hop_ms=10)
    assert (bwe.window_samples, bwe.hop_samples, bwe.latency_ms) == (1920, 480, 1919 / 48)


def test_empty_input_gives_empty_output(identity_bwe):
    assert identity_bwe.process(np.zeros((2, 0), np.float32), RATE).shape == (2, 0)
    assert identity_bwe.process(np.zeros(0, np.float32), RATE, reset=False).shape == (0,)


def test_call_is_process(identity_bwe):
    x = _noise(3000)
    np.testing.assert_array_equal(identity_bwe(x, RATE), identity_bwe.process(x, RATE))


# --- models by name and path ----------------------------------------------------------------

def test_default_model_without_shipped_weights_says_how_to_get_one():
    from rtbwe.weights import SHIPPED, WEIGHTS_DIR

    if (WEIGHTS_DIR / f"{SHIPPED['default']}.json").exists():
        pytest.skip("default weights are shipped in this install")
    with pytest.raises(rtbwe.ModelLoadingError, match="no default model yet"):
        BandwidthExtender()


def test_registry_name_builds_random_weights_with_a_warning():
    with pytest.warns(UserWarning, match="random weights"):
        bwe = BandwidthExtender("tiny")
    assert bwe.sample_rate == RATE


def test_saved_weights_bring_their_sample_rate(tmp_path):
    net = random_tiny(2)
    card = rtbwe.save_model(net, tmp_path / "tiny16k", {
        "model_class": "ARUNet", "model_kwargs": models.build_kwargs("tiny")[1],
        "sample_rate": 16000})
    bwe = BandwidthExtender(card)
    # 21.33 ms and 16 ms at 16 kHz
    assert (bwe.sample_rate, bwe.window_samples, bwe.hop_samples) == (16000, 341, 256)
    with pytest.raises(ValueError, match="runs at 16000 Hz"):
        bwe.process(np.zeros(100, np.float32), RATE)
    with pytest.raises(ValueError, match="trained at 16000 Hz"):
        BandwidthExtender(card, sample_rate=48000)


def test_torchscript_file_as_model(tmp_path):
    from rtbwe.engine import export_torchscript

    net = random_tiny(1)
    path = export_torchscript(net, tmp_path / "tiny.ts", 960, RATE)
    x = _noise((2, 4000), seed=2)
    np.testing.assert_allclose(BandwidthExtender(path).process(x, RATE),
                               BandwidthExtender(net).process(x, RATE), atol=1e-5)


def test_extend_resamples_to_the_model_rate():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = extend(np.stack([tone, tone]), 16000, model=nn.Identity())
    assert y.shape == (2, 48000)
    expected = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    np.testing.assert_allclose(y[0, 1000:-1000], expected[1000:-1000], atol=1e-2)
    assert extend(tone, 16000, model=nn.Identity()).shape == (48000,)


def test_window_quality_is_zero_for_identity_at_every_grid_phase():
    """The benchmark helper that chose the window: an identity network must score exactly
    0 dB at every hop-grid phase (a misaligned crop would not)."""
    from rtbwe.benchmarking import window_quality

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    result = window_quality(nn.Identity(), 1024, 512, audio, phases=3)
    for name in ("seen", "unseen"):
        assert abs(result[f"{name}_dsnr"]) < 1e-3
        assert result[f"{name}_dsnr_spread"] < 1e-3
        assert abs(result[f"{name}_whole_dsnr"]) < 1e-3
