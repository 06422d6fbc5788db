"""rtbwe.benchmarking.InterleavedStreams.paced: blocks processed in real time, as live."""
import time

import numpy as np
from torch import nn

from rtbwe import BandwidthExtender
from rtbwe.benchmarking import InterleavedStreams

SR = 48000


def test_paced_streams_each_extender_in_real_time():
    extenders = {name: BandwidthExtender(nn.Identity(), sample_rate=SR, num_threads=1,
                                         window_ms=1000 * w / SR, hop_ms=1000 * h / SR)
                 for name, (w, h) in {"long": (1024, 768), "short": (448, 224)}.items()}
    streams = InterleavedStreams(extenders, 1, SR, seed=0, lowpass_hz=6000.0)
    begun = time.perf_counter()
    responses = streams.paced(0.5, warmup_s=0.1)
    wall_s = time.perf_counter() - begun
    assert 0.55 < wall_s < 3.0  # it waits for each hop of audio instead of running flat out
    for name, hop in (("long", 768), ("short", 224)):
        calls = streams.times[name]
        assert abs(len(calls) - 0.5 * SR / hop) <= 2, (name, len(calls))
        assert len(responses[name]) == len(calls)
        # a response runs from when the block was due to the call's end: never shorter than it
        assert np.all(np.asarray(responses[name]) >= np.asarray(calls) - 1e-6)


def test_time_streaming_paced_waits_for_each_block_and_bench_takes_the_flag(capsys):
    from rtbwe import cli
    from rtbwe.benchmarking import time_streaming

    bwe = BandwidthExtender(nn.Identity(), sample_rate=SR, num_threads=1)
    begun = time.perf_counter()
    timing = time_streaming(bwe, 480, seconds=0.3, paced=True)
    assert time.perf_counter() - begun >= 0.3  # 30 blocks of 10 ms, each awaited
    assert timing.calls == 30
    assert cli.main(["bench", "--models", "tiny", "--backends", "eager", "--threads", "1",
                     "--seconds", "0.1", "--paced"]) == 0
    assert "paced in real time" in capsys.readouterr().out
