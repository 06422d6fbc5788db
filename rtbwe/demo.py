"""``rtbwe demo``: extend the bundled clip with the default model and show the result.

The bundled clip (``rtbwe/data/demo_clip.flac``, from the corpus test split, never seen in
training) is the full-band reference. The demo low-passes it at 6 kHz with the seen test
filter (Chebyshev-1, order 6, zero phase), extends it with the default model through the
streaming block processor, and writes to ``OUT``:

* ``input_6k.wav``: the band-limited input; ``extended.wav``: the output; ``reference.wav``;
* ``spectrograms.png``: input, output and reference, as the paper's Fig. 3.

It prints SNR, ΔSNR, LSD and LSD-HF of input and output, and the RT factor.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_CLIP = DATA_DIR / "demo_clip.flac"


def run_demo(out_dir: str | Path, model: str = "default", block_size: int = 480,
             filter_name: str = "seen", threads: int | None = None) -> dict[str, float]:
    import soundfile as sf

    from . import filters, metrics
    from .processor import BandwidthExtender
    from .weights import ModelLoadingError, read_card

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference, sample_rate = sf.read(str(DEMO_CLIP), dtype="float32")
    info_path = DEMO_CLIP.with_suffix(".json")
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    try:
        kwargs = {"num_threads": threads} if threads else {}
        bwe = BandwidthExtender(model=model, sample_rate=sample_rate, **kwargs)
    except ModelLoadingError as err:
        print(f"rtbwe demo: {err}")
        return {}
    card = read_card(model)
    cutoff_hz = float(card.get("cutoff_hz", 6000.0))
    spec = filters.TEST_FILTERS[filter_name]
    lowpassed = filters.apply(reference, sample_rate, cutoff_hz, spec)

    # Stream block by block, as a live host would, then undo the latency.
    t0 = time.perf_counter()
    bwe.reset()
    padded = np.concatenate([lowpassed, np.zeros(bwe.latency_samples, np.float32)])
    blocks = [bwe.process(padded[i:i + block_size], sample_rate, reset=False)
              for i in range(0, len(padded), block_size)]
    elapsed = time.perf_counter() - t0
    extended = np.concatenate(blocks)[bwe.latency_samples:][: len(reference)]

    sf.write(str(out / "input_6k.wav"), lowpassed, sample_rate, subtype="FLOAT")
    sf.write(str(out / "extended.wav"), extended, sample_rate, subtype="FLOAT")
    sf.write(str(out / "reference.wav"), reference, sample_rate, subtype="FLOAT")
    from .plotting import plot_spectrograms

    png = plot_spectrograms({"input (low-passed)": lowpassed, "rtbwe output": extended,
                             "reference": reference}, sample_rate, out / "spectrograms.png",
                            cutoff_hz=cutoff_hz, title=f"{info.get('piece_id', 'demo clip')}, "
                            f"{spec} at {cutoff_hz / 1000:g} kHz")
    duration_s = len(reference) / sample_rate
    result = {
        "snr_in_db": metrics.snr_db(reference, lowpassed),
        "snr_out_db": metrics.snr_db(reference, extended),
        "lsd_in": metrics.lsd(reference, lowpassed, sample_rate),
        "lsd_out": metrics.lsd(reference, extended, sample_rate),
        "lsd_hf_in": metrics.lsd_hf(reference, lowpassed, sample_rate, cutoff_hz),
        "lsd_hf_out": metrics.lsd_hf(reference, extended, sample_rate, cutoff_hz),
        "rt_factor": elapsed / duration_s,
    }
    print(f"rtbwe demo: {duration_s:.1f} s clip '{info.get('piece_id', DEMO_CLIP.name)}', "
          f"{spec} low-pass at {cutoff_hz:g} Hz, model {card.get('name', model)}")
    print(f"  SNR    {result['snr_in_db']:6.2f} dB -> {result['snr_out_db']:6.2f} dB "
          f"(ΔSNR {result['snr_out_db'] - result['snr_in_db']:+.2f} dB)")
    print(f"  LSD    {result['lsd_in']:6.3f}    -> {result['lsd_out']:6.3f}")
    print(f"  LSD-HF {result['lsd_hf_in']:6.3f}    -> {result['lsd_hf_out']:6.3f} "
          f"({1 - result['lsd_hf_out'] / result['lsd_hf_in']:.0%} lower)")
    print(f"  RT factor {result['rt_factor']:.3f} (streaming, {block_size}-sample blocks, "
          f"latency {1000 * bwe.latency_samples / sample_rate:.1f} ms)")
    print(f"  wrote {out / 'extended.wav'} and {png}")
    return result


def _cmd(args: argparse.Namespace) -> int:
    run_demo(args.out, args.model, args.block_size, args.filter, args.threads)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="extend the bundled clip; write wav + spectrogram PNG")
    p.add_argument("--out", default="demo-out", help="output folder")
    p.add_argument("--model", default="default", help="model name or card path")
    p.add_argument("--block-size", type=int, default=480, help="streaming block (samples)")
    p.add_argument("--filter", default="seen", choices=["seen", "unseen"],
                   help="low-pass that makes the input: seen (Chebyshev-1 6, a training "
                   "filter) or unseen (Butterworth 6)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads "
                   "(default 1, robust when other work shares the cores)")
    p.set_defaults(func=_cmd)
