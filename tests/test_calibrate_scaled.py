"""The scaled band's gain table (training/calibrate_scaled.py): the per-bucket components
rebuild the processor's error at another table, the fitted table never loses on its own
data, and `rtbwe-train calibrate-scaled` writes a card the processor loads."""
import json

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from rtbwe import BandwidthExtender, load_model
from rtbwe.training import calibrate_scaled as cs
from rtbwe.training.calibrate import GAIN_EDGES_HZ, least_squares_gains
from rtbwe.training.matrix import matrix_rows

SR = 48000
CARD = "default-scaled-half-6k"


def _music_like(seconds: float, seed: int) -> np.ndarray:
    """Noise falling about 6 dB per octave (a bright music-like spectrum), (samples,)."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(1, 1000, fs=SR, output="sos")
    return (0.3 * signal.sosfilt(sos, rng.standard_normal(int(seconds * SR)))).astype(np.float32)


def test_components_rebuild_the_processor_and_the_fit_never_loses_on_its_data():
    """Exactly without the lock's level cap (with it the output is only nearly linear in
    the gains: on this bright noise the cap binds from gain 1 up, so 1.5 adds as 1)."""
    clip = _music_like(2.0, 4)
    model = load_model(CARD)
    model.card = card = {**model.card, "max_added_ratio": None}
    stats = cs.scaled_pair_statistics(model, [clip], SR)
    assert model.card == card  # restored
    row = "butter-6 4 kHz"
    pair = next(p for p in stats if p.row == row)
    assert pair.gram.trace() > 0  # its windows were scaled: some bucket has a band
    gains = np.linspace(0.5, 1.5, len(GAIN_EDGES_HZ))
    y = cs._extender(model, card, gains).process(matrix_rows()[row].apply(clip, SR), SR)
    model.card = card
    actual = float(np.sum((clip.astype(np.float64) - y) ** 2))
    assert pair.error(gains) == pytest.approx(actual, rel=1e-3)
    fitted = least_squares_gains(stats)
    assert sum(p.error(fitted) for p in stats) <= sum(p.base for p in stats) * (1 + 1e-9)


def test_calibrate_scaled_writes_a_card_the_processor_loads(tmp_path, capsys):
    from rtbwe.training.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pieces = []
    for i, split in enumerate(("validation", "validation", "train", "test")):
        sf.write(corpus / f"{split}{i}.flac", _music_like(1.5, 10 + i), SR)
        pieces.append({"file": f"{split}{i}.flac", "split": split})
    (corpus / "manifest.json").write_text(json.dumps({"pieces": pieces}))
    out = tmp_path / "cards" / "scaled.json"
    args = ["calibrate-scaled", CARD, str(out), "--data", str(corpus), "--clips", "2",
            "--clip-seconds", "1.5"]
    with pytest.raises(SystemExit, match="at least 2 validation clips"):
        main(args[:5] + ["--clips", "1"])
    assert main(args) == 0
    assert "cross-validated worst row" in capsys.readouterr().out
    card = json.loads(out.read_text())
    table = card["cutoff_scaling"]["gain"]
    assert [edge for edge, _ in table] == list(GAIN_EDGES_HZ)
    assert card["scaled_calibration"]["pairs"] >= 10
    assert BandwidthExtender(str(out), num_threads=1).cutoff_scaling["gain"] == table
    with pytest.raises(SystemExit, match="exists"):
        main(args)
