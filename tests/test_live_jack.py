"""The live path through a real JACK server (dummy driver): PortAudio, callback, worker, ports.

A source client plays a test signal into rtbwe's JACK input port and a sink client records
its output port (see ``jack_fixtures.JackLoop``). PortAudio's JACK host adds one block between
its ports and reports it as output latency, so the exact expectation is::

    recorded[k] == signal[k - total]    total = session.latency_frames + device latency
                                              = model (W - 1) + buffer_blocks * block + block
"""
from __future__ import annotations

import io

import numpy as np
import pytest

from jack_fixtures import (JackLoop, OtherWork, control_xruns, jack_server,  # noqa: F401
                           jack_server_generous, load_average, measured_delay, portaudio_ports)

SR = 48000

pytestmark = pytest.mark.jack


def identity_extender():
    torch = pytest.importorskip("torch")
    from rtbwe import processor
    return processor.BandwidthExtender(torch.nn.Identity(), sample_rate=SR, device="cpu")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def run_through_jack(server, processor, x: np.ndarray, block: int, buffer_blocks: int = 2,
                     slack_s: float = 0.6, callback: str = "python"):
    """Play ``x`` through ``rtbwe`` live on ``server``; returns (loop, summary, session)."""
    from rtbwe.live import LiveSession
    from rtbwe.live_device import run_live

    session = LiveSession(processor, SR, block, buffer_blocks=buffer_blocks)
    extra = session.latency_frames + 4 * block
    loop = JackLoop(x, extra, server.name)
    try:
        def started(stream):
            send_to, receive_from = portaudio_ports(server.name)
            loop.connect(send_to, receive_from)

        duration_s = (x.size + extra) / SR + slack_s
        summary = run_live(session, "system", "system", duration_s=duration_s,
                           on_started=started, out=io.StringIO(), callback=callback)
        assert loop.wait_done(5.0), f"recorded only {loop.recorded_frames} frames"
    finally:
        loop.close()
    return loop, summary, session


# runs before a test that needs a clean real-time run gives up on this machine. Measured on the
# idle 2-core VM (18:42-18:45 UTC, 16 interleaved runs each of 1.5 s at 256 frames): rtbwe's
# identity model had JACK xruns in 6 runs, a bare PortAudio passthrough with the same JACK
# clients in 3 (the Python callbacks share one GIL); with 3 attempts and one control run about
# 1 in 20 runs of a test failed on the harness's own xruns, so 5 attempts and up to 3 controls.
# Seventeenth session: the VM's xruns come in bursts; one CI run failed at 256 frames (5
# attempts with 1-8 xruns each, 3 clean controls) and the same test two minutes later had 13
# xruns in its first control run, then passed twice at this commit and at the session's
# first (identity model: the session's changes add only the dark gate's per-hop work, some
# 20-30 us per 16 ms hop). Up to 5 controls, over 7.5 s, sample such a burst better
ATTEMPTS = 5
CONTROL_RUNS = 5


def trouble(loop, summary) -> str:
    """What spoilt a run for a sample-exact comparison ('' for a clean run)."""
    parts = [f"{n} {what}" for n, what in (
        (loop.xruns_while_recording(), "JACK xruns"), (summary["xruns"], "PortAudio xruns"),
        (summary["late_frames"], f"frames played dry (worker load {summary['worker_load']:.0%})"),
        (summary["dropped_frames"], "dropped frames")) if n]
    return ", ".join(parts)


MAX_OTHER_CORES = 0.5  # other processes using more than this during a run: too busy for it


def skip_or_fail(troubles: list[str], server_name: str, seconds: float,
                 controls: list[int], other_cores: list[float | None],
                 strict: bool = True, block_frames: int | None = None) -> None:
    """After ATTEMPTS spoilt runs: skip, with the measurements, when other processes used more
    than MAX_OTHER_CORES during every run (the xruns are the load's) or a control run with no
    rtbwe in the graph also had xruns (with ``block_frames``: the same JACK clients through a
    bare PortAudio passthrough at that block, see ``jack_fixtures.control_xruns``); otherwise
    fail. ``strict=False`` always skips (for a
    test about something else than xruns, which needs one clean run to compare samples)."""
    for _ in range(CONTROL_RUNS):  # the harness alone, until one of its runs is spoilt
        if any(controls):  # (a test may have run controls between its attempts)
            break
        controls.append(control_xruns(server_name, seconds, block_frames))
    busy = [c for c in other_cores if c is not None]
    report = (f"{'; '.join(troubles)}; other processes used {', '.join(f'{c:.2f}' for c in busy)}"
              f" cores during the runs; control runs with no rtbwe client: {controls} "
              f"xruns; load average {load_average()}")
    if any(controls) or (busy and min(busy) > MAX_OTHER_CORES):
        pytest.skip(f"this machine did not keep real time in {ATTEMPTS} runs: {report}")
    if not strict:
        pytest.skip(f"no run without xruns or late blocks in {ATTEMPTS} tries: {report}")
    pytest.fail(f"real time failed on a machine with cores to spare: {report}")


def first_clean_run(server, attempt, seconds: float, *, controls_each_attempt: bool = False,
                    strict: bool = True, block_frames: int | None = None):
    """Call ``attempt()`` (one run through JACK, its per-run assertions inside; returns (loop,
    summary, what else spoilt the run or '')) up to ATTEMPTS times; returns (loop, summary) of
    the first run without xruns, late or dropped frames, or skips / fails by
    :func:`skip_or_fail`. ``controls_each_attempt``: a control run after each spoilt one."""
    troubles, controls, others = [], [], []
    for _attempt in range(ATTEMPTS):  # a busy machine spoils a run, not the code: retry
        other = OtherWork(server.process.pid)
        loop, summary, spoilt_by = attempt()
        others.append(other.cores())
        spoilt = trouble(loop, summary) or spoilt_by
        if not spoilt:
            return loop, summary
        troubles.append(spoilt)
        if controls_each_attempt:
            controls.append(control_xruns(server.name, seconds, block_frames))
    skip_or_fail(troubles, server.name, seconds, controls, others, strict=strict,
                 block_frames=block_frames)


def test_identity_model_exact_delay_zero_xruns_over_5_s(jack_server_generous):
    """Delay and signal exact in every run; zero xruns in a run, or a skip that says how loaded
    the machine was (the same JACK clients without rtbwe also had xruns)."""
    server = jack_server_generous
    x = noise(5.2)

    def attempt():
        loop, summary, session = run_through_jack(server, identity_extender(), x,
                                                  block=server.period_frames)
        total = summary["total_latency_frames"]
        assert total == session.latency_frames + server.period_frames  # PortAudio's one block
        assert measured_delay(loop.recorded, x, 2 * total) == total
        return loop, summary, ""

    loop, summary = first_clean_run(server, attempt, x.size / SR, controls_each_attempt=True,
                                    block_frames=server.period_frames)
    total = summary["total_latency_frames"]
    np.testing.assert_allclose(loop.recorded[total:total + x.size], x, atol=1e-5)
    np.testing.assert_array_equal(loop.recorded[:total], 0.0)


def test_identity_model_exact_delay_at_256_frames(jack_server):
    """The issue's server (-p 256). The delay is exact in every run, whatever the load; the
    samples are compared in the first run without xruns or late blocks (a period JACK drops
    under load leaves zeros in the capture, not a wrong delay)."""
    x = noise(1.5, seed=1)

    def attempt():
        bwe = identity_extender()
        loop, summary, session = run_through_jack(jack_server, bwe, x, block=256)
        total = summary["total_latency_frames"]
        queue_frames = session.latency_frames - bwe.latency_samples
        assert queue_frames % 256 == 0 and queue_frames >= 2 * 256
        assert total == bwe.latency_samples + queue_frames + 256  # + PortAudio's JACK block
        assert measured_delay(loop.recorded, x, 2 * total) == total
        return loop, summary, ""

    loop, summary = first_clean_run(jack_server, attempt, x.size / SR, block_frames=256)
    total = summary["total_latency_frames"]
    np.testing.assert_allclose(loop.recorded[total:total + x.size], x, atol=1e-5)


def test_c_callback_exact_delay(jack_server, tmp_path, monkeypatch):
    from rtbwe import ccallback

    monkeypatch.setenv("RTBWE_CACHE_DIR", str(tmp_path))  # build it here, from scratch
    monkeypatch.setattr(ccallback, "_module", None)
    monkeypatch.setattr(ccallback, "_error", None)
    if not ccallback.available():
        pytest.skip(ccallback._error)
    x = noise(1.0, seed=3)

    def attempt():
        loop, summary, session = run_through_jack(jack_server, identity_extender(), x,
                                                  block=256, callback="c")
        assert summary["callback"] == "c" and summary["callbacks"] > 0
        total = summary["total_latency_frames"]
        assert measured_delay(loop.recorded, x, 2 * total) == total == session.latency_frames + 256
        return loop, summary, ""

    # CI at 44fa8d3: a run with no late block but a JACK period lost (256 zeros) failed the
    # comparison; like the other tests, a spoilt run is retried and the samples need one clean
    # run (this test is about the C callback's delay, not about xruns)
    loop, summary = first_clean_run(jack_server, attempt, x.size / SR, strict=False,
                                    block_frames=256)
    total = summary["total_latency_frames"]
    np.testing.assert_allclose(loop.recorded[total:total + x.size], x, atol=1e-5)


def test_keyboard_interrupt_stops_cleanly(jack_server):
    from rtbwe.chain import Delay
    from rtbwe.live import LiveSession
    from rtbwe.live_device import run_live

    session = LiveSession(Delay(0), SR, 256)

    def interrupt(stream):
        raise KeyboardInterrupt

    summary = run_live(session, "system", "system", duration_s=30, on_started=interrupt,
                       out=io.StringIO())
    assert summary["interrupted"]
    assert session._thread is None  # worker joined
    import jack

    with jack.Client("rtbwe-check", no_start_server=True, servername=jack_server.name) as c:
        assert not c.get_ports("PortAudio"), "the stream was left open"


def default_weights_missing() -> str | None:
    from rtbwe.weights import ModelLoadingError, resolve

    try:
        resolve("default")
    except ModelLoadingError as err:
        return f"default weights absent: {err}"
    return None


def tiny_model_card(folder) -> str:
    """A randomly initialised tiny ARUNet saved as weights + card: a real network, any weights."""
    import torch

    from rtbwe import models
    from rtbwe.weights import save_model

    torch.manual_seed(0)
    cls_name, kwargs = models.build_kwargs("tiny")
    net = models.build("tiny").eval()
    with torch.no_grad():  # the output conv starts at zero (identity net): randomise it
        for param in net.parameters():
            if not param.any():
                param.normal_(0.0, 0.1)
    return str(save_model(net, folder / "tiny", {"model_class": cls_name, "model_kwargs": kwargs,
                                                 "sample_rate": SR}))


def _not_contiguous(received: list[np.ndarray], x: np.ndarray) -> str:
    """'' when the blocks handed to the extender hold ``x`` whole after their leading zeros;
    else what spoilt the run. Seen once with the machine overloaded (load average about 4,
    a calibration and a training job on both cores): a run with no xrun or late block counted
    whose received stream, after its leading zeros, did not start with x (its first sample
    was -0.137 where x starts at 6e-6). Why is not known; such a run cannot be compared, so it
    is retried like one with xruns, and after 3 the test skips with the reasons."""
    stream = np.concatenate([block.reshape(-1) for block in received]) if received else x[:0]
    nonzero = np.flatnonzero(stream)
    lead = int(nonzero[0]) if nonzero.size else 0
    if stream.size >= lead + x.size and np.array_equal(stream[lead:lead + x.size], x):
        return ""
    return "the input handed to the extender was not the signal, whole and in order"


@pytest.mark.parametrize("model", [
    "tiny",
    pytest.param("default", marks=pytest.mark.skipif(default_weights_missing() is not None,
                                                     reason=str(default_weights_missing()))),
])
def test_live_output_matches_rtbwe_process(model, jack_server, tmp_path):
    """With a real network (the shipped default model when present), live == `rtbwe process`."""
    import soundfile as sf
    from scipy.signal import butter, sosfilt

    from rtbwe.cli import main

    from rtbwe import processor
    model_arg = tiny_model_card(tmp_path) if model == "tiny" else "default"
    sos = butter(8, 6000, "lowpass", fs=SR, output="sos")  # band-limited, like real input
    x = sosfilt(sos, noise(1.5, seed=2)).astype(np.float32)
    received: list[np.ndarray] = []

    class TappedExtender(processor.BandwidthExtender):
        """Keeps a copy of every block the live worker hands to the extender."""

        def process(self, input_array, *args, **kwargs):
            received.append(np.array(input_array, dtype=np.float32, copy=True))
            return super().process(input_array, *args, **kwargs)

    # one thread, as `rtbwe live` runs by default: two collapse on a loaded 2-core machine
    bwe = TappedExtender(model_arg, device="cpu", num_threads=1)

    def attempt():
        received.clear()
        bwe.reset()
        loop, summary, _ = run_through_jack(jack_server, bwe, x, block=256, buffer_blocks=8)
        return loop, summary, _not_contiguous(received, x)

    # measured in a full test run with the machine quiet (0.00-0.02 other cores): 1-4 xruns in
    # each of 3 runs, the JACK clients, PortAudio's callback and the worker sharing one Python
    # process; this test is about live == process, not xruns
    loop, summary = first_clean_run(jack_server, attempt, x.size / SR, strict=False)
    # Windowed processing depends on where the signal falls on the hop grid, and when the JACK
    # source starts playing relative to rtbwe's stream is up to the scheduler (one period more
    # or less between runs). So `rtbwe process` gets exactly the leading silence the live
    # extender received. (Measured with the trained model: a 256-sample grid shift alone
    # changes the output to 33 dB SNR; a 1-sample one to 24 dB.)
    stream = np.concatenate([block.reshape(-1) for block in received])
    lead = int(np.flatnonzero(stream)[0])
    np.testing.assert_array_equal(stream[lead:lead + x.size], x)  # nothing lost or reordered
    sf.write(tmp_path / "in.wav", np.concatenate([np.zeros(lead, np.float32), x]), SR,
             subtype="FLOAT")
    assert main(["process", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--quiet",
                 "--device", "cpu", "--model", model_arg]) == 0
    offline, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == SR and offline.shape[0] == lead + x.size
    offline = offline[lead:]
    total = summary["total_latency_frames"]
    live = loop.recorded[total:total + x.size]
    assert np.abs(offline - x).max() > 0.01  # the network changed the signal
    # Same network, different batch shapes: float rounding differs; a one-sample misalignment
    # would cost over 30 dB.
    error = live - offline.reshape(live.shape)
    snr_db = 10 * np.log10(np.sum(offline ** 2) / max(np.sum(error ** 2), 1e-30))  # 0: equal
    assert snr_db > 50.0 and np.abs(error).max() < 2e-3


def test_cli_live_runs_and_reports(jack_server, capsys):
    from rtbwe.cli import main

    assert main(["live", "--model", "identity", "--duration", "0.8", "--input", "system",
                 "--output", "system", "--block-size", "256", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "latency" in err and "worker load" in err and "stopped" in err
    assert main(["devices"]) == 0
    assert "JACK" in capsys.readouterr().out
