"""rtbwe's default model against its peers, timed in the same run, each pair interleaved.

Every test times one peer and ``BandwidthExtender("default")`` (the shipped model, backend
``auto``: ONNX Runtime when installed) round by round in one process, so the ratio holds
while the machine's load moves; the load is recorded with each row. Figures: milliseconds per
second of audio offline (4 s of noise at -20 dBFS in one call), and ``peer_vs_rtbwe``, the
peer's time over rtbwe's. Every test runs twice, at 1 and at 2 threads (the ``threads``
fixture: ``torch.set_num_threads`` and ONNX Runtime's intra-op threads for every contender).

Peers (each an optional dependency; its test skips cleanly, saying why, when it is missing):

* ``hifi-gan-bwe`` (PyPI, HiFi-GAN+ WaveNet, random weights: its pretrained ones are a
  download): needs ``torchaudio``, whose wheels pin one torch version each; installing it here
  would replace torch 2.13.0, so on our machines the test skips.
* HiFi-GAN+ rebuilt (``peers.HiFiGANPlus``): the same generator from its published code, so
  that it is timed here all the same; random weights, **timing only**, at 48 kHz input (the
  package's own 16 -> 48 kHz resampling left out); offline (non-causal) only.
* ``deepfilternet`` (PyPI, DeepFilterNet3, its default model via ``init_df``): imports
  ``torchaudio`` too, and ``init_df`` downloads its weights; skips here for the same reasons.
* SEANet-style causal BWE (``peers.SEANetBWE``): rebuilt from the published topology with
  random weights, **timing only**; eager and through ONNX Runtime offline, and streaming
  statefully (each causal conv keeps its left context, ``SEANetBWE.stream``) in 512-sample
  chunks against rtbwe's 512-sample hops: ms per 10 ms of audio (``test_seanet_streaming``).
* AP-BWE (``peers.APBWE``): the generator at its published 48 kHz configuration, random
  weights, **timing only**, STFT and inverse STFT included; offline (non-causal) only.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from rtbwe.benchmarking import build_extender

RATE = 48000
SECONDS = 4.0


@pytest.fixture(scope="module", params=[1, 2], ids=["1thr", "2thr"])
def threads(request):
    """Every contender of a test runs with this many threads (torch and ONNX Runtime)."""
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def rtbwe_default(threads):
    return build_extender("default", "auto", threads)


@pytest.fixture(scope="module")
def rtbwe_eager(threads):
    return build_extender("default", "eager", threads)


def _noise(rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(SECONDS * rate))).astype(np.float32)


def _interleaved(benchmark, record, rtbwe_default, peers: dict, rounds: int = 3,
                 rtbwe_eager=None) -> None:
    """Time ``peers`` (name -> no-argument callable processing SECONDS of audio) and rtbwe's
    default offline on the same audio (``rtbwe_eager`` too, if given), one call each per
    round."""
    x = _noise(RATE)[None]
    contenders = {"rtbwe": lambda: rtbwe_default.process(x, RATE), **peers}
    if rtbwe_eager is not None:
        contenders["rtbwe_eager"] = lambda: rtbwe_eager.process(x, RATE)
    times: dict[str, list[float]] = {name: [] for name in contenders}

    def one_round():
        for name, run in contenders.items():
            begun = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begun)

    load_before = os.getloadavg()[0]
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
    figures = {"load_1min": f"{load_before:.2f}->{os.getloadavg()[0]:.2f}",
               "rtbwe_backend": rtbwe_default.backend, "threads": torch.get_num_threads()}
    rtbwe_ms = 1e3 * float(np.median(times["rtbwe"][1:])) / SECONDS
    for name, values in times.items():
        per_second_ms = 1e3 * float(np.median(values[1:])) / SECONDS
        figures[f"{name}_ms_per_s"] = per_second_ms
        figures[f"{name}_vs_rtbwe"] = per_second_ms / rtbwe_ms
    record(**figures)


def _torch_runner(model: torch.nn.Module, x: np.ndarray, *args):
    tensor = torch.from_numpy(x)[None, None]

    def run():
        with torch.inference_mode():
            return model(tensor, *args)
    return run


def test_seanet_style_causal_bwe(benchmark, record, threads, rtbwe_default, rtbwe_eager):
    from peers import SEANetBWE

    torch.manual_seed(0)
    net = SEANetBWE().eval()
    x = _noise(RATE)
    peers = {"seanet_eager": _torch_runner(net, x)}
    try:
        import onnxruntime as ort

        from rtbwe.engine_onnx import onnx_bytes

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(onnx_bytes(net, len(x)), options,
                                       providers=["CPUExecutionProvider"])
        peers["seanet_onnx"] = lambda: session.run(None, {"x": x[None, None]})
    except ImportError:
        pass
    record(seanet_parameters=sum(p.numel() for p in net.parameters()))
    _interleaved(benchmark, record, rtbwe_default, peers, rtbwe_eager=rtbwe_eager)


def test_hifi_gan_bwe(benchmark, record, rtbwe_default):
    models = pytest.importorskip("hifi_gan_bwe.models", reason="pip install hifi-gan-bwe (needs "
                                 "torchaudio for this torch; never let it replace torch)")
    torch.manual_seed(0)
    net = models.BandwidthExtender().eval()  # random weights: the pretrained are a download
    x16 = _noise(16000)  # its usual input rate; it resamples to 48 kHz itself
    _interleaved(benchmark, record, rtbwe_default,
                 {"hifi_gan_bwe": _torch_runner(net, x16, 16000)}, rounds=1)


def test_hifi_gan_plus_rebuilt(benchmark, record, rtbwe_default):
    from peers import HiFiGANPlus

    torch.manual_seed(0)
    net = HiFiGANPlus().eval()
    record(hifi_gan_plus_parameters=sum(p.numel() for p in net.parameters()))
    _interleaved(benchmark, record, rtbwe_default,
                 {"hifi_gan_plus_rebuilt": _torch_runner(net, _noise(RATE))}, rounds=2)


def test_deepfilternet3(benchmark, record, rtbwe_default):
    enhance = pytest.importorskip("df.enhance", reason="pip install deepfilternet (needs "
                                  "torchaudio and deepfilterlib; never let it replace torch)")
    try:
        model, state, _ = enhance.init_df(log_level="ERROR")
    except Exception as err:  # noqa: BLE001 - its weights are a download
        pytest.skip(f"DeepFilterNet3's default weights could not be loaded: {err}")
    audio = torch.from_numpy(_noise(state.sr()))[None]
    _interleaved(benchmark, record, rtbwe_default,
                 {"deepfilternet3": lambda: enhance.enhance(model, state, audio)})


def test_ap_bwe(benchmark, record, rtbwe_default, rtbwe_eager):
    from peers import APBWE

    torch.manual_seed(0)
    net = APBWE().eval()
    record(ap_bwe_parameters=sum(p.numel() for p in net.parameters()))
    _interleaved(benchmark, record, rtbwe_default, {"ap_bwe": _torch_runner(net, _noise(RATE))},
                 rtbwe_eager=rtbwe_eager)


def test_seanet_streaming(benchmark, record, rtbwe_default, rtbwe_eager):
    """Per 10 ms of audio, streaming: SEANet-style stateful in 512-sample chunks (checked equal
    to its offline output first) against rtbwe's default in 512-sample hops, interleaved."""
    from peers import SEANetBWE

    torch.manual_seed(0)
    net = SEANetBWE().eval()
    chunk = 512
    x = torch.from_numpy(_noise(RATE)[:chunk * 16])[None, None]
    with torch.inference_mode():
        offline = net(x)
        net.stream(True)
        streamed = torch.cat([net(x[..., i:i + chunk]) for i in range(0, x.shape[-1], chunk)], -1)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)
    blocks = [np.ascontiguousarray(b) for b in x[0].numpy().reshape(1, 16, chunk)
              .transpose(1, 0, 2)]
    for bwe in (rtbwe_default, rtbwe_eager):
        bwe.reset()
        bwe.prepare(1, chunk)
    contenders = {
        "rtbwe": lambda b: rtbwe_default.process(b, RATE, reset=False),
        "rtbwe_eager": lambda b: rtbwe_eager.process(b, RATE, reset=False),
        "seanet_stream": lambda b: net(torch.from_numpy(b)[None]),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    step = [0]

    def one_round():
        block = blocks[step[0] % 16]
        step[0] += 1
        with torch.inference_mode():
            for name, run in contenders.items():
                begun = time.perf_counter()
                run(block)
                times[name].append(time.perf_counter() - begun)

    load_before = os.getloadavg()[0]
    benchmark.pedantic(one_round, rounds=int(SECONDS * RATE) // chunk, iterations=1,
                       warmup_rounds=20)
    net.stream(False)
    per_10ms = {name: 1e3 * float(np.mean(v[20:])) * 0.010 / (chunk / RATE)
                for name, v in times.items()}
    record(load_1min=f"{load_before:.2f}->{os.getloadavg()[0]:.2f}",
           rtbwe_backend=rtbwe_default.backend, threads=torch.get_num_threads(),
           **{f"{name}_ms_per_10ms": value for name, value in per_10ms.items()},
           **{f"{name}_vs_rtbwe": value / per_10ms["rtbwe"] for name, value in per_10ms.items()},
           **{f"{name}_p99_ms": 1e3 * float(np.percentile(v[20:], 99))
              for name, v in times.items()})
