"""Cheaper students of a trained (Conditioned)ARUNet (issue 14): structured channel pruning
and distillation.

Pruning (:func:`prune_arunet`): a narrower ARUNet of the same depth and kernels whose every
weight is a slice of the teacher's, keeping at each level the channels the next layers read
most (largest L2 norm of the weight columns that consume the channel). Channel sets follow the
U-Net's couplings:

* encoder ``k``: one set ``E_k`` for its stride-2 conv, its residual conv (``R(x) + x``) and
  its skip into the decoder; consumers: the next encoder (or the bottleneck), its own
  residual conv, the decoder's skip columns;
* bottleneck: ``B1`` for its first conv (consumer: the second conv); after its x2 pixel
  shuffle, the set ``Q_0`` of shuffled channels (conv rows ``2q, 2q+1``);
* decoder ``i`` (from the bottleneck): output set ``Q_{i+1}`` of shuffled channels, so its
  conv and residual rows are the pairs ``2q, 2q+1``; its input columns are ``Q_i`` then the
  skip's ``E``; consumers of ``Q``: the next decoder's up columns or the output conv;
* FiLM: the MLP stays whole; its last layer keeps the scale and shift rows of every kept
  channel of every site.

Kept at full width, the pruned net equals the teacher (tests/test_distill.py).

Distillation (:class:`DistillTrainer`, config ``distill_from = "card.json"``,
``distill_weight``): on the wide degradations, the loss is
``(1 - w) * loss(student, clean target) + w * MSE(student, teacher)``, both outputs through the
same training form of the detected-band lock; the teacher runs without gradients.

    python -m training.distill prune rtbwe/weights/arunet-small-wide.json runs/half/init \\
        --filters 8 16 16 32 32 --bottleneck 32
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rtbwe import models
from rtbwe.passband import lock_to_band

from .trainer import Trainer


def _top(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest scores, in ascending index order."""
    return torch.sort(torch.topk(scores, n).indices).values


def _column_norms(weight: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """Squared L2 norm of input columns ``start .. start+count`` of a conv weight
    (out, in, k) -> (count,)."""
    return weight[:, start:start + count].pow(2).sum(dim=(0, 2))


def _pairs(q: torch.Tensor) -> torch.Tensor:
    """Shuffled channels q -> the conv rows that make them: 2q, 2q+1 (x2 pixel shuffle)."""
    return torch.stack([2 * q, 2 * q + 1], dim=1).reshape(-1)


def channel_sets(state: dict[str, torch.Tensor], levels: int, filters: list[int],
                 bottleneck: int) -> dict[str, torch.Tensor]:
    """The kept channel indices of the teacher ``state`` for student widths ``filters`` (one
    per level) and ``bottleneck``: ``E0..`` (encoders), ``B1``, ``Q0..Q{levels}`` (shuffled
    channels after the bottleneck and each decoder)."""
    sets: dict[str, torch.Tensor] = {}
    t_filters = [state[f"encoders.{k}.down.conv.weight"].shape[0] for k in range(levels)]
    t_bottleneck = state["bottleneck.0.conv.weight"].shape[0]
    up_channels = [t_bottleneck] + [w // 2 for w in reversed(t_filters)]  # into decoder i
    for k in range(levels):
        nxt = (state[f"encoders.{k + 1}.down.conv.weight"] if k + 1 < levels
               else state["bottleneck.0.conv.weight"])
        i = levels - 1 - k
        score = (_column_norms(nxt, 0, t_filters[k])
                 + _column_norms(state[f"encoders.{k}.res.body.conv.weight"], 0, t_filters[k])
                 + _column_norms(state[f"decoders.{i}.conv.weight"], up_channels[i],
                                 t_filters[k]))
        sets[f"E{k}"] = _top(score, filters[k])
    sets["B1"] = _top(_column_norms(state["bottleneck.1.conv.weight"], 0, t_bottleneck),
                      bottleneck)
    s_up = [bottleneck] + [w // 2 for w in reversed(filters)]
    for i in range(levels + 1):
        consumer = (state[f"decoders.{i}.conv.weight"] if i < levels else state["out.weight"])
        sets[f"Q{i}"] = _top(_column_norms(consumer, 0, up_channels[i]), s_up[i])
    return sets


def _conv(dst: dict, state: dict, prefix: str, rows: torch.Tensor | None,
          cols: torch.Tensor | None) -> None:
    w = state[f"{prefix}.weight"]
    w = w if rows is None else w[rows]
    dst[f"{prefix}.weight"] = (w if cols is None else w[:, cols]).clone()
    if f"{prefix}.bias" in state:
        b = state[f"{prefix}.bias"]
        dst[f"{prefix}.bias"] = (b if rows is None else b[rows]).clone()


def _norm(dst: dict, state: dict, prefix: str, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        if f"{prefix}.{name}" in state:
            dst[f"{prefix}.{name}"] = state[f"{prefix}.{name}"][idx].clone()
    if f"{prefix}.num_batches_tracked" in state:
        dst[f"{prefix}.num_batches_tracked"] = state[f"{prefix}.num_batches_tracked"].clone()


def pruned_state(state: dict[str, torch.Tensor], levels: int, sets: dict[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    """The teacher's ``state`` sliced to the channel ``sets`` (:func:`channel_sets`)."""
    out: dict[str, torch.Tensor] = {}
    t_bottleneck = state["bottleneck.0.conv.weight"].shape[0]
    prev = None  # the input of encoder 0 is the single audio channel
    for k in range(levels):
        e = sets[f"E{k}"]
        _conv(out, state, f"encoders.{k}.down.conv", e, prev)
        _norm(out, state, f"encoders.{k}.down.norm", e)
        _conv(out, state, f"encoders.{k}.res.body.conv", e, e)
        _norm(out, state, f"encoders.{k}.res.body.norm", e)
        prev = e
    _conv(out, state, "bottleneck.0.conv", sets["B1"], prev)
    _conv(out, state, "bottleneck.1.conv", _pairs(sets["Q0"]), sets["B1"])
    up = t_bottleneck
    for i in range(levels):
        rows = _pairs(sets[f"Q{i + 1}"])
        skip = sets[f"E{levels - 1 - i}"]
        _conv(out, state, f"decoders.{i}.conv", rows, torch.cat([sets[f"Q{i}"], up + skip]))
        _conv(out, state, f"decoders.{i}.res.body.conv", rows, rows)
        _norm(out, state, f"decoders.{i}.res.body.norm", rows)
        up = state[f"decoders.{i}.conv.weight"].shape[0] // 2
    _conv(out, state, "out", None, sets[f"Q{levels}"])
    if "film.net.4.weight" in state:  # scale and shift rows of the kept channels, per site
        sites = [t_bottleneck] + [state[f"decoders.{i}.conv.weight"].shape[0] // 2
                                  for i in range(levels)]
        rows, offset = [], 0
        for i, channels in enumerate(sites):
            q = sets[f"Q{i}"]
            rows += [offset + q, offset + channels + q]
            offset += 2 * channels
        for name, value in state.items():
            if name.startswith("film."):
                out[name] = value.clone()
        _conv(out, state, "film.net.4", torch.cat(rows), None)
    return out


def prune_arunet(teacher: nn.Module, model_name: str, kwargs: dict, filters: list[int],
                 bottleneck: int) -> nn.Module:
    """A ``model_name`` built with ``kwargs`` but ``filters`` / ``bottleneck_filters``
    narrowed, holding the teacher's weights sliced to the kept channels (eval mode)."""
    levels = len(teacher.encoders)
    if len(filters) != levels:
        raise ValueError(f"need {levels} widths, got {len(filters)}")
    student = models.build(model_name, **{**kwargs, "filters": tuple(filters),
                                          "bottleneck_filters": int(bottleneck)})
    state = teacher.state_dict()
    student.load_state_dict(pruned_state(state, levels,
                                         channel_sets(state, levels, filters, bottleneck)))
    return student.eval()


class DistillTrainer(Trainer):
    """:class:`Trainer` whose loss mixes the clean target with a teacher's output: on the
    wide degradations through the training form of the lock, or on the paper's single-cutoff
    task (a 6 kHz model's student) on the outputs as they are."""

    def __init__(self, config, run_dir, log=print):
        super().__init__(config, run_dir, log=log)
        from rtbwe.weights import load_model

        self.teacher = load_model(config.distill_from).to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.log(f"distilling from {config.distill_from}, weight {config.distill_weight}")

    def wide_loss(self) -> torch.Tensor:
        x, y, c, low_hz, high_hz = (self.prefetcher.next() if self.prefetcher is not None
                                    else self.sampler.batch(self.cfg.batch_size))
        x, y = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        c = torch.from_numpy(c).to(self.device)
        rate = self.cfg.sample_rate
        out = lock_to_band(x, self.forward_model(x, c), rate, low_hz, high_hz)
        with torch.no_grad():
            target = lock_to_band(x, self.teacher(x, c), rate, low_hz, high_hz)
        return self.mixed_loss(out, y, target)

    def single_cutoff_loss(self) -> torch.Tensor:
        x, y, c = self.single_cutoff_batch()
        inputs = (x,) if c is None else (x, c)
        out = self.forward_model(*inputs)
        with torch.no_grad():
            target = self.teacher(*inputs)
        return self.mixed_loss(out, y, target)

    def mixed_loss(self, out: torch.Tensor, clean: torch.Tensor, teacher: torch.Tensor
                   ) -> torch.Tensor:
        """``(1 - w) * loss(out, clean) + w * MSE(out, teacher)``, w = ``distill_weight``."""
        w = self.cfg.distill_weight
        return (1 - w) * self.loss(out, clean) + w * F.mse_loss(out, teacher)


def cmd_prune(args: argparse.Namespace) -> int:
    from rtbwe.weights import load_model, save_model

    teacher = load_model(args.card)
    card = teacher.card
    student = prune_arunet(teacher, card["model"], card["model_kwargs"], args.filters,
                           args.bottleneck)
    cls_name, kwargs = models.build_kwargs(card["model"], **{
        **card["model_kwargs"], "filters": list(args.filters),
        "bottleneck_filters": args.bottleneck})
    path = save_model(student, args.out, {
        "name": Path(args.out).name, "model": card["model"], "model_class": cls_name,
        "model_kwargs": kwargs, "sample_rate": card["sample_rate"],
        "cutoff_hz": card.get("cutoff_hz"), "steps": 0,
        "pruned_from": {"card": str(args.card), "sha256": card.get("sha256")}})
    print(f"{path}: {models.count_parameters(student):,} parameters (teacher "
          f"{models.count_parameters(teacher):,})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.distill")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="write a channel-pruned card of a trained ARUNet card")
    pr.add_argument("card", help="the teacher's card (.json) or shipped name")
    pr.add_argument("out", help="output stem (writes OUT.json and OUT.safetensors)")
    pr.add_argument("--filters", type=int, nargs="+", required=True, help="widths per level")
    pr.add_argument("--bottleneck", type=int, required=True, help="bottleneck width")
    pr.set_defaults(func=cmd_prune)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
