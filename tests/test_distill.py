"""Structured channel pruning and distillation of ARUNet students (training/distill.py)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import rtbwe
from rtbwe import conditioning, models
from rtbwe.training import config as config_mod
from rtbwe.training.distill import DistillTrainer, channel_sets, prune_arunet

SR = 48000
TEACHER_KW = dict(filters=(8, 8, 16, 16, 16), kernel_sizes=(9,) * 5, bottleneck_filters=16,
                  dropout=0.0, zero_init_output=False, condition_bands=12)
STUDENT = dict(filters=[4, 4, 8, 8, 8], bottleneck=8)


def _random_teacher(seed: int = 0) -> nn.Module:
    """A conditioned ARUNet with every tensor random, batch-norm statistics included."""
    torch.manual_seed(seed)
    net = models.build("arunet-small-cond", **TEACHER_KW)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("running_mean") or name.startswith("film.net.4"):
                t.normal_(0, 0.1)
    return net.eval()


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(2, 1, 512, generator=g),
            torch.rand(2, TEACHER_KW["condition_bands"], generator=g))


def _unread(teacher: nn.Module) -> nn.Module:
    """The teacher with the channels a half-width student would lose made unread: the
    consumer columns of every second channel (and shuffled channel, and the decoder conv rows
    that make it) set to zero, so those channels cannot change the output."""
    st = teacher.state_dict()
    levels = len(teacher.encoders)
    f = [st[f"encoders.{k}.down.conv.weight"].shape[0] for k in range(levels)]
    b = st["bottleneck.0.conv.weight"].shape[0]
    up = [b] + [w // 2 for w in reversed(f)]
    with torch.no_grad():
        for k in range(levels):
            drop = torch.arange(1, f[k], 2)
            nxt = (f"encoders.{k + 1}.down.conv.weight" if k + 1 < levels
                   else "bottleneck.0.conv.weight")
            st[nxt][:, drop] = 0
            st[f"encoders.{k}.res.body.conv.weight"][:, drop] = 0
            st[f"decoders.{levels - 1 - k}.conv.weight"][:, up[levels - 1 - k] + drop] = 0
        st["bottleneck.1.conv.weight"][:, torch.arange(1, b, 2)] = 0
        for i in range(levels + 1):
            consumer = f"decoders.{i}.conv.weight" if i < levels else "out.weight"
            st[consumer][:, torch.arange(0, up[i], 2)] = 0  # drop the even shuffled ones
            if i < levels:  # and the decoder's residual conv reads its conv rows 4j, 4j+1
                rows = st[f"decoders.{i}.res.body.conv.weight"].shape[0]
                made = torch.stack([torch.arange(0, rows, 4), torch.arange(1, rows, 4)], 1)
                st[f"decoders.{i}.res.body.conv.weight"][:, made.reshape(-1)] = 0
    return teacher


def test_pruning_to_full_width_is_the_teacher():
    teacher = _random_teacher()
    student = prune_arunet(teacher, "arunet-small-cond", TEACHER_KW, list(TEACHER_KW["filters"]),
                           TEACHER_KW["bottleneck_filters"])
    x, c = _inputs()
    with torch.no_grad():
        assert torch.equal(student(x, c), teacher(x, c))


def test_pruning_keeps_the_read_channels_and_equals_a_teacher_that_ignores_the_rest():
    teacher = _unread(_random_teacher())
    levels = len(teacher.encoders)
    sets = channel_sets(teacher.state_dict(), levels, STUDENT["filters"], STUDENT["bottleneck"])
    for k in range(levels):
        assert sets[f"E{k}"].tolist() == list(range(0, TEACHER_KW["filters"][k], 2))
    assert sets["B1"].tolist() == list(range(0, TEACHER_KW["bottleneck_filters"], 2))
    assert all(sets[f"Q{i}"].tolist()[0] == 1 for i in range(levels + 1))
    student = prune_arunet(teacher, "arunet-small-cond", TEACHER_KW, **STUDENT)
    assert models.count_parameters(student) < models.count_parameters(teacher) / 2.5
    x, c = _inputs()
    with torch.no_grad():
        expected, got = teacher(x, c), student(x, c)
    assert not torch.allclose(expected, x, atol=1e-3)  # the teacher does change its input
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_pruning_an_unprepared_teacher_changes_its_output():
    teacher = _random_teacher()
    student = prune_arunet(teacher, "arunet-small-cond", TEACHER_KW, **STUDENT)
    x, c = _inputs()
    with torch.no_grad():
        assert not torch.allclose(student(x, c), teacher(x, c), atol=1e-4)


def _folder(tmp_path, n=4, seconds=2.0):
    folder = tmp_path / "audio"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(folder / f"take{i}.flac", (0.1 * rng.standard_normal(int(seconds * SR)))
                 .astype(np.float32), SR, subtype="PCM_24")
    return folder


def _tiny_cond_card(tmp_path, seed: int) -> str:
    torch.manual_seed(seed)
    kwargs = {"condition_bands": conditioning.WIDE_BANDS}
    net = models.build("tiny-cond", **kwargs)
    with torch.no_grad():
        nn.init.normal_(net.out.weight, std=0.2)
    return str(rtbwe.save_model(net, tmp_path / f"teacher{seed}", {
        "model_class": "ConditionedARUNet", "sample_rate": SR, "model": "tiny-cond",
        "model_kwargs": models.build_kwargs("tiny-cond", **kwargs)[1]}))


def _config(folder, **changes):
    return config_mod.TrainConfig(**{
        "name": "d", "model": "tiny-cond",
        "model_kwargs": {"condition_bands": conditioning.WIDE_BANDS}, "degradations": "wide",
        "data": str(folder), "steps": 2, "batch_size": 2, "segment_samples": 2048,
        "val_every": 2, "val_clips": 1, "val_clip_seconds": 1.0, "checkpoint_every": 2,
        "log_every": 1, "threads": 1, "device": "cpu", "data_workers": 0, **changes})


def test_distillation_from_the_student_itself_has_zero_teacher_loss(tmp_path):
    card = _tiny_cond_card(tmp_path, 3)
    folder = _folder(tmp_path)
    trainer = DistillTrainer(_config(folder, init_from=card, distill_from=card,
                                     distill_weight=1.0), tmp_path / "same", log=lambda s: None)
    trainer.warm_start(card)
    trainer.model.eval()  # the same batch-norm statistics as the teacher's
    with torch.no_grad():
        assert float(trainer.wide_loss()) == pytest.approx(0.0, abs=1e-12)
    other = _tiny_cond_card(tmp_path, 4)
    trainer = DistillTrainer(_config(folder, init_from=card, distill_from=other,
                                     distill_weight=1.0), tmp_path / "other", log=lambda s: None)
    trainer.warm_start(card)
    trainer.model.eval()
    with torch.no_grad():
        assert float(trainer.wide_loss()) > 1e-8


def test_distill_trainer_trains_and_records_its_teacher(tmp_path):
    card = _tiny_cond_card(tmp_path, 3)
    cfg = _config(_folder(tmp_path), distill_from=card, distill_weight=0.5)
    from rtbwe.training.distributed import make_trainer

    with make_trainer(cfg, tmp_path / "run", log=lambda s: None) as trainer:
        assert isinstance(trainer, DistillTrainer)
        trainer.train()
    saved = json.loads((tmp_path / "run" / "best.json").read_text())
    assert saved["training"]["distill_from"] == card
    assert saved["training"]["distill_weight"] == 0.5


def test_single_cutoff_distillation_matches_its_teacher_and_trains(tmp_path):
    """A 6 kHz model's student: the paper's single-cutoff task (no 'wide' degradations), the
    teacher's output as is; zero teacher loss against itself, and a run that trains."""
    def card(seed):
        torch.manual_seed(seed)
        net = models.build("tiny-cond")
        with torch.no_grad():
            nn.init.normal_(net.out.weight, std=0.2)
        return str(rtbwe.save_model(net, tmp_path / f"classic{seed}", {
            "model_class": "ConditionedARUNet", "sample_rate": SR, "model": "tiny-cond",
            "model_kwargs": models.build_kwargs("tiny-cond")[1]}))

    folder = _folder(tmp_path)
    same, other = card(5), card(6)
    changes = dict(model_kwargs={}, degradations="cutoff", cutoff_hz=6000.0, augment=True,
                   init_from=same, distill_weight=1.0)
    for teacher, positive in ((same, False), (other, True)):
        trainer = DistillTrainer(_config(folder, distill_from=teacher, **changes),
                                 tmp_path / f"run-{positive}", log=lambda s: None)
        trainer.warm_start(same)
        trainer.model.eval()
        with torch.no_grad():
            loss = float(trainer.single_cutoff_loss())
        assert (loss > 1e-8) if positive else loss == pytest.approx(0.0, abs=1e-12)
    trainer.train()
    assert (tmp_path / "run-True" / "best.json").is_file()
