"""Training package: corpus builder, loaders, pair sampling, resumable training, export."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import filters, metrics, models
from rtbwe.training import config as config_mod
from rtbwe.training import corpus, data
from rtbwe.training.trainer import Trainer

SR = 48000


def _write_tones(folder, n=6, seconds=2.0, rates=(48000, 44100)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for i in range(n):
        x = 0.3 * np.sign(np.sin(2 * np.pi * 110 * (i + 1) * t)) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"piece{i}.flac", x.astype(np.float32), rates[i % len(rates)],
                 subtype="PCM_24")
    return folder


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed "
                    "(apt-get install fluidsynth fluid-soundfont-gm)")
def test_corpus_builder_tiny(tmp_path):
    sf2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    cfg = corpus.CorpusConfig(max_pieces=3, max_seconds=2.0, workers=1, val_fraction=0.34,
                              test_fraction=0.33,
                              soundfont=sf2 if __import__("os").path.exists(sf2) else None)
    manifest = corpus.build(tmp_path / "c", cfg, progress=lambda s: None)
    assert manifest["pieces"], manifest["errors"]
    for entry in manifest["pieces"]:
        info = sf.info(str(tmp_path / "c" / entry["file"]))
        assert info.samplerate == SR and info.channels == 1 and info.subtype == "PCM_24"
        assert 0.2 < info.duration <= 2.0 + 1e-6
        assert entry["split"] in data.SPLITS
    # deterministic: the same seed gives the same manifest
    again = corpus.build(tmp_path / "d", cfg, progress=lambda s: None)
    assert [e["piece_id"] for e in again["pieces"]] == [e["piece_id"] for e in manifest["pieces"]]
    assert [e["instruments"] for e in again["pieces"]] == [e["instruments"] for e in manifest["pieces"]]
    files = data.dataset_files(tmp_path / "c")
    assert sum(len(v) for v in files.values()) == len(manifest["pieces"])


def test_split_is_by_piece_and_deterministic():
    ids = [f"bach_bwv{i}" for i in range(400)]
    splits = [corpus.split_of(i, 0, 0.1, 0.1) for i in ids]
    assert splits == [corpus.split_of(i, 0, 0.1, 0.1) for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in data.SPLITS}
    assert 0.05 < frac["test"] < 0.15 and 0.05 < frac["validation"] < 0.15
    assert splits != [corpus.split_of(i, 1, 0.1, 0.1) for i in ids]  # the seed matters


def test_maestro_loader(tmp_path):
    (tmp_path / "2004").mkdir()
    rows = ["canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration"]
    for i, split in enumerate(["train", "train", "validation", "test"]):
        rows.append(f"C,T{i},{split},2004,2004/p{i}.midi,2004/p{i}.wav,1.0")
    (tmp_path / "maestro-v3.0.0.csv").write_text("\n".join(rows) + "\n")
    files = data.dataset_files(tmp_path)
    assert [p.name for p in files["train"]] == ["p0.wav", "p1.wav"]
    assert [p.name for p in files["test"]] == ["p3.wav"]
    (tmp_path / "maestro-v3.0.0.csv").write_text(rows[0] + "\nC,T,holdout,2004,a.midi,a.wav,1\n")
    with pytest.raises(ValueError, match="unknown split"):
        data.maestro_files(tmp_path)


def test_folder_loader_and_resampling(tmp_path):
    folder = _write_tones(tmp_path / "f", n=10)
    files = data.dataset_files(folder)
    all_files = sorted(p for v in files.values() for p in v)
    assert len(all_files) == 10 and len(set(all_files)) == 10
    assert files["test"] and files["validation"]
    assert data.folder_files(folder, seed=0) == files
    x44 = data.load_audio(folder / "piece1.flac", SR)  # 96000 samples labelled 44.1 kHz
    assert abs(len(x44) - round(2 * SR * SR / 44100)) <= 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        data.folder_files(tmp_path / "empty")


def test_corrupt_audio_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC not really")
    with pytest.raises(ValueError, match="cannot read audio file"):
        data.load_audio(bad, SR)


def test_pair_sampler_cutoff_jitter(tmp_path):
    pool = data.AudioPool.load(sorted(_write_tones(tmp_path / "f").glob("*.flac")), SR)
    jittered = data.PairSampler(pool, 4096, 6000, augment=True, seed=2, cutoff_jitter=0.15)
    cutoffs = np.array([jittered.cutoff_for_segment() for _ in range(2000)])
    assert cutoffs.min() >= 6000 / 1.15 - 0.5 and cutoffs.max() <= 6000 * 1.15 + 0.5  # whole Hz
    assert np.all(cutoffs == np.round(cutoffs))
    assert cutoffs.min() < 5300 and cutoffs.max() > 6800  # spans the range
    assert abs(np.median(np.log(cutoffs / 6000))) < 0.02  # log-uniform around the cutoff
    # without DA (or with jitter 0) the cutoff is exactly the configured one
    for sampler in (data.PairSampler(pool, 4096, 6000, augment=False, cutoff_jitter=0.15),
                    data.PairSampler(pool, 4096, 6000, augment=True)):
        assert {sampler.cutoff_for_segment() for _ in range(20)} == {6000.0}
    with pytest.raises(ValueError, match="cutoff_jitter"):
        data.PairSampler(pool, 4096, 6000, cutoff_jitter=1.5)


def test_pair_sampler_filters(tmp_path):
    pool = data.AudioPool.load(sorted(_write_tones(tmp_path / "f").glob("*.flac")), SR)
    sampler = data.PairSampler(pool, segment_samples=4096, cutoff_hz=6000, augment=True, seed=1)
    drawn = {str(sampler.filter_for_segment()) for _ in range(400)}
    assert drawn == {str(f) for f in filters.TRAIN_FILTERS}
    flat = data.PairSampler(pool, 4096, 6000, augment=True, seed=1, augment_set="table1+flat")
    drawn = {str(flat.filter_for_segment()) for _ in range(400)}
    assert drawn == {str(f) for f in filters.TRAIN_FILTERS + filters.FLAT_FILTERS}
    with pytest.raises(ValueError, match="augment_set"):
        data.PairSampler(pool, 4096, 6000, augment_set="table2")
    single = data.PairSampler(pool, 4096, 6000, augment=False, augment_set="table1+flat")
    assert {str(single.filter_for_segment()) for _ in range(50)} == {"cheby1-6"}
    x, y = single.batch(3)
    assert x.shape == y.shape == (3, 1, 4096) and x.dtype == np.float32
    # the input equals the whole track low-passed then cropped (away from the track edges)
    checked = 0
    for _ in range(20):
        xi, yi, index, start = single.segment()
        track = pool.tracks[index]
        assert np.array_equal(yi, track[start:start + 4096])
        if 2048 <= start <= len(track) - 4096 - 2048:
            whole = filters.apply(track, SR, 6000, filters.SEEN_TEST_FILTER)
            assert np.allclose(xi, whole[start:start + 4096], atol=1e-5)
            checked += 1
    assert checked
    # the high band is gone from the input but present in the target
    window = np.hanning(4096)
    spec_x = np.abs(np.fft.rfft(x[:, 0] * window, axis=-1)) ** 2
    spec_y = np.abs(np.fft.rfft(y[:, 0] * window, axis=-1)) ** 2
    hf = np.fft.rfftfreq(4096, 1 / SR) > 7000
    assert spec_x[:, hf].sum() < 1e-3 * spec_y[:, hf].sum()


def _smoke_config(folder, steps):
    return config_mod.TrainConfig(name="t", model="tiny", data=str(folder), steps=steps,
                                  batch_size=2, segment_samples=2048, val_every=3, val_clips=2,
                                  val_clip_seconds=0.5, checkpoint_every=100, log_every=1,
                                  threads=1, device="cpu")


def test_training_resumes_exactly(tmp_path):
    folder = _write_tones(tmp_path / "f")
    straight = Trainer(_smoke_config(folder, 6), tmp_path / "a", log=lambda s: None)
    straight.train()
    interrupted = Trainer(_smoke_config(folder, 4), tmp_path / "b", log=lambda s: None)
    interrupted.train()  # stops at 4 and writes checkpoint.pt ("killed")
    resumed = Trainer(_smoke_config(folder, 6), tmp_path / "b", log=lambda s: None)
    assert resumed.load_checkpoint() and resumed.step == 4
    resumed.train(resume=False)  # already loaded
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    log = (tmp_path / "b" / "log.csv").read_text()
    assert "validation" in log and "train" in log
    card = json.loads((tmp_path / "b" / "best.json").read_text())
    assert card["model"] == "tiny" and card["cutoff_hz"] == 6000.0
    assert len(card["data_manifest_sha256"]) == 64 and "validation" in card


def test_training_with_a_passband_lock_records_it_in_the_card(tmp_path):
    from rtbwe.weights import load_model

    folder = _write_tones(tmp_path / "f")
    cfg = _smoke_config(folder, 3).replace(model_kwargs={"keep_below_hz": 4000.0},
                                           augment_set="table1+flat")
    Trainer(cfg, tmp_path / "run", log=lambda s: None).train()
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["model_kwargs"]["keep_below_hz"] == 4000.0
    assert card["model_kwargs"]["sample_rate"] == SR
    assert card["training"]["augment_set"] == "table1+flat"
    model = load_model(tmp_path / "run" / "best.json").eval()
    assert model.residual_filter.keep_below_hz == 4000.0
    unlocked = models.build("tiny").eval()
    unlocked.load_state_dict(model.state_dict())
    x = torch.from_numpy(np.sin(2 * np.pi * 500 * np.arange(4096) / SR).astype(np.float32))
    low = np.fft.rfftfreq(3072, 1 / SR) < 3000

    def change_below_3k(net):  # energy the net adds below 3 kHz (away from the edges)
        with torch.inference_mode():
            change = (net(x[None, None]) - x)[0, 0, 512:-512].numpy()
        return float(np.sum(np.abs(np.fft.rfft(change * np.hanning(3072))[low]) ** 2))

    assert change_below_3k(model) < 1e-5 * change_below_3k(unlocked)


def test_eval_cli_prints_metrics_and_band_errors(tmp_path, capsys):
    from rtbwe.training.cli import main

    folder = _write_tones(tmp_path / "f", n=10)
    trainer = Trainer(_smoke_config(folder, 2), tmp_path / "run", log=lambda s: None)
    trainer.train()
    card = tmp_path / "run" / "best.json"
    assert main(["eval", str(card), "--data", str(folder), "--no-visqol", "--bands",
                 "--clips", "2", "--clip-seconds", "1", "--threads", "1",
                 "--extra-filters", "butter-4,cheby2-6"]) == 0
    out = capsys.readouterr().out
    assert "| Input | seen (cheby1-6) |" in out and f"| {card} | unseen (butter-6) |" in out
    assert "| Input | butter-4 (butter-4) |" in out and f"| {card} | cheby2-6 (cheby2-6) |" in out
    # a gentler filter leaves more of the band above the cutoff: a higher input SNR
    snr = {row.split("|")[2].strip(): float(row.split("|")[3]) for row in out.splitlines()
           if row.startswith("| Input |") and "(" in row}
    assert snr["butter-4 (butter-4)"] > snr["unseen (butter-6)"]
    with pytest.raises(ValueError, match="bad filter 'butter'"):
        main(["eval", str(card), "--data", str(folder), "--extra-filters", "butter"])
    band_rows = [line for line in out.splitlines() if line.startswith("| Input | unseen |")]
    assert len(band_rows) == 1
    cells = [float(c) for c in band_rows[0].strip("|").split("|")[2:]]
    assert len(cells) == len(metrics.BAND_EDGES_HZ)  # 10 bands and the total
    assert cells[0] < cells[-1] - 20  # the input's error lies above the cutoff, not at 0-3 kHz


def test_config_toml_round_trip(tmp_path):
    cfg = config_mod.TrainConfig(name="x", model_kwargs={"dropout": 0.1}, betas=(0.8, 0.9))
    path = tmp_path / "c.toml"
    path.write_text(config_mod.dump_toml(cfg))
    assert config_mod.load_config(path) == cfg
    assert config_mod.load_config(path, steps=7).steps == 7
    path.write_text('nmae = "typo"\n')
    with pytest.raises(ValueError, match="unknown config keys"):
        config_mod.load_config(path)


def test_shipped_configs_parse():
    from pathlib import Path

    for path in (Path(__file__).parent.parent / "training" / "configs").glob("*.toml"):
        cfg = config_mod.load_config(path)
        assert cfg.model


def test_warm_start_from_a_card(tmp_path):
    folder = _write_tones(tmp_path / "f")
    first = Trainer(_smoke_config(folder, 3), tmp_path / "a", log=lambda s: None)
    first.train()
    cfg = _smoke_config(folder, 3).replace(init_from=str(tmp_path / "a" / "best.json"), steps=0)
    second = Trainer(cfg, tmp_path / "b", log=lambda s: None)
    second.train()
    best = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    for name, value in second.model.state_dict().items():
        assert torch.equal(value, best[name]) or name.endswith("num_batches_tracked"), name
