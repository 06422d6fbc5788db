"""The trainer never validates on the test split, and its log lines name their numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from rtbwe.training import config as config_mod
from rtbwe.training import trainer as trainer_mod


def _corpus(folder, splits):
    """A corpus manifest with one 1 s noise file per entry of ``splits``."""
    folder.mkdir()
    pieces = []
    for i, split in enumerate(splits):
        name = f"{split}{i}.flac"
        noise = 0.1 * np.random.default_rng(i).standard_normal(48000)
        sf.write(folder / name, noise.astype(np.float32), 48000)
        pieces.append({"file": name, "split": split})
    (folder / "manifest.json").write_text(json.dumps({"pieces": pieces}))
    return folder


def _config(folder, steps=2):
    return config_mod.TrainConfig(name="t", model="tiny", data=str(folder), steps=steps,
                                  batch_size=2, segment_samples=2048, val_every=2, val_clips=2,
                                  val_clip_seconds=0.5, checkpoint_every=100, log_every=1,
                                  threads=1, device="cpu")


def _loaded_files(monkeypatch):
    loaded = []
    original = trainer_mod.AudioPool.load

    def load(files, *args, **kwargs):
        loaded.append([p.name for p in files])
        return original(files, *args, **kwargs)

    monkeypatch.setattr(trainer_mod.AudioPool, "load", load)
    return loaded


def test_without_a_validation_split_part_of_train_is_held_out_not_test(tmp_path, monkeypatch):
    folder = _corpus(tmp_path / "c", ["train"] * 4 + ["test"])
    loaded, lines = _loaded_files(monkeypatch), []
    trainer_mod.Trainer(_config(folder), tmp_path / "run", log=lines.append)
    train, validation = loaded
    assert "test4.flac" not in train + validation
    assert validation == ["train3.flac"] and train == ["train0.flac", "train1.flac",
                                                        "train2.flac"]
    assert any("no validation split: held out 1 of 4 training files" in s for s in lines)


def test_one_training_file_and_no_validation_split_is_refused(tmp_path):
    folder = _corpus(tmp_path / "c", ["train", "test"])
    with pytest.raises(ValueError, match="no validation split"):
        trainer_mod.Trainer(_config(folder), tmp_path / "run", log=lambda s: None)


def test_log_lines_name_their_numbers(tmp_path):
    folder = _corpus(tmp_path / "c", ["train"] * 2 + ["validation"])
    lines = []
    trainer_mod.Trainer(_config(folder), tmp_path / "run", log=lines.append).train()
    text = "\n".join(lines)
    assert "training loss" in text and "steps/s" in text and "min left" in text
    assert "ΔSNR" in text and "seen filter: SNR" in text and "(d" not in text
