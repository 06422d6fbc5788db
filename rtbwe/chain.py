"""``rtbwe.Chain``: pedalboard plugins and rtbwe processors in one chain.

A Python object cannot sit inside a ``pedalboard.Pedalboard`` (spotify/pedalboard#12), so a
chain groups consecutive native plugins into ``Pedalboard`` s and calls rtbwe processors between
the groups::

    chain = rtbwe.Chain([pedalboard.HighpassFilter(80), rtbwe.BandwidthExtender(),
                         pedalboard.Compressor(), pedalboard.Reverb()])
    y = chain(x, 48000)                             # whole buffer: same length, aligned
    y = chain.process(block, 48000, reset=False)    # streaming: same length, delayed by
                                                    # chain.latency_samples

Arrays are float32 ``(channels, samples)`` or ``(samples,)``; the output has the input's shape.
Input goes through the processor's own conversion (:func:`rtbwe.processor.as_channels_first`):
int16/int32 are scaled to [-1, 1), float64 is cast, complex and other dtypes are refused.

A processor holds one stream's state, so one object may sit in one place of one live chain
only: the same extender twice in a chain, or in two chains, would mix two streams' state, and
is refused with a ValueError (use one ``BandwidthExtender`` per place; they can share a
module: ``BandwidthExtender(other.engine.model)``).

The hop grid
------------
A ``BandwidthExtender`` cuts its input into windows on a fixed grid of ``hop_samples``, and
its output depends on where the windows fall. Streaming, a processor behind stages of total
latency ``L`` sees its input ``L`` samples late, so its grid sits ``L`` samples earlier in the
signal. The whole-buffer path reproduces that grid: it feeds each processor its input with
``L`` zeros in front (and drops ``L`` samples of its output), so streaming output equals the
whole-buffer output delayed by :attr:`Chain.latency_samples` in every chain. A latent native
group's ``L`` is known once streaming has measured it (or ``internal_block_size`` is given);
before that, the whole-buffer path counts it as 0.

A *processor* is any object with ``process(x, sample_rate, buffer_size, reset)``, ``reset()`` and
``latency_samples`` that is not a ``pedalboard.Plugin`` (``rtbwe.BandwidthExtender``, another
``Chain``). With ``reset=False`` it must return as many samples as it is given, delayed by
exactly ``latency_samples``.

Streaming through latent native plugins
---------------------------------------
With ``reset=False``, ``Resample``, ``GSMFullRateCompressor`` and ``MP3Compressor`` return
fewer samples than they receive, and how many fewer depends on the sequence of block sizes
(``Resample`` lags by 257, 258 or 515 samples). Each native group with latency therefore runs
behind a :class:`~rtbwe.chain_fifo.FixedBlockStage`: it sees blocks of one fixed size ``K``
only, its lag ``D_K`` is measured once by priming it with silence, and an output FIFO pre-filled
with ``D_K + K - 1`` zeros hands back exactly as many samples as were given. Groups without
latency are called directly, at no cost.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterable

import numpy as np
import pedalboard

from .chain_fifo import FixedBlockStage, channels_first, check_block_shape, is_latent

__all__ = ["Chain", "Delay", "is_processor"]


def is_processor(item: Any) -> bool:
    """True for an rtbwe-style processor: ``process``/``reset``/``latency_samples``, not native."""
    return (not isinstance(item, pedalboard.Plugin) and callable(getattr(item, "process", None))
            and callable(getattr(item, "reset", None)) and hasattr(item, "latency_samples"))


# processor -> the Chain that uses it (weakly: a processor is free again once its chain is gone)
_OWNERS: "weakref.WeakKeyDictionary[Any, weakref.ref]" = weakref.WeakKeyDictionary()


def _claim(item: Any, chain: "Chain", index: int) -> None:
    """Register ``chain`` as the one user of processor ``item``; refuse a second user."""
    try:
        owner_ref = _OWNERS.get(item)
    except TypeError:  # not weak-referenceable or not hashable: cannot track it
        return
    owner = owner_ref() if owner_ref is not None else None
    if owner is not None and owner is not chain:
        raise ValueError(f"chain item {index} ({type(item).__name__}) is already in another "
                         "live Chain; a processor holds one stream's state, so give each chain "
                         "its own (BandwidthExtender(other.engine.model) shares the network)")
    _OWNERS[item] = weakref.ref(chain)


def as_input(input_array: Any) -> tuple[np.ndarray, bool]:
    """Chain input -> (float32 C-contiguous (channels, samples), was_1d), converted exactly as
    :class:`~rtbwe.processor.BandwidthExtender` converts it (int16 scaled, complex refused)."""
    from .processor import as_channels_first

    return as_channels_first(np.asarray(input_array))


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if x.ndim == 1:
        return x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected float32 (channels, samples) or (samples,), got shape {x.shape}")
    return x


class Chain:
    """Run native pedalboard plugins and rtbwe processors in order, pedalboard-style.

    ``items``: ``pedalboard.Plugin`` s (a ``Pedalboard`` included) and processors, in order.
    ``internal_block_size``: the fixed block size ``K`` fed to native groups with latency in
    streaming mode; ``None`` takes the size of the first streamed block (capped at
    ``buffer_size``). Their latency is ``D_K + K - 1`` samples.
    """

    def __init__(self, items: Iterable[Any], internal_block_size: int | None = None) -> None:
        self.items = list(items)
        if internal_block_size is not None and internal_block_size < 1:
            raise ValueError("internal_block_size must be >= 1 (or None for the first block size)")
        self.internal_block_size = internal_block_size
        self.stages: list[Any] = []
        group: list[pedalboard.Plugin] = []
        seen: dict[int, int] = {}
        for i, item in enumerate(self.items):
            if is_processor(item):
                if id(item) in seen:
                    raise ValueError(f"chain items {seen[id(item)]} and {i} are the same "
                                     f"{type(item).__name__} object; a processor holds one "
                                     "stream's state, so use a separate one for each place "
                                     "(BandwidthExtender(other.engine.model) shares the network)")
                seen[id(item)] = i
            if isinstance(item, pedalboard.Plugin):
                group.append(item)
                continue
            if not is_processor(item):
                raise TypeError(
                    f"chain item {i} ({type(item).__name__}) is neither a pedalboard.Plugin nor a "
                    "processor with process(x, sample_rate, buffer_size, reset), reset() and "
                    "latency_samples; wrap it in a class that has them")
            if group:
                self.stages.append(self._native_stage(group))
                group = []
            self.stages.append(item)
        for i, item in enumerate(self.items):
            if is_processor(item):
                _claim(item, self, i)
        if group:
            self.stages.append(self._native_stage(group))
        # (sample_rate, channels, K) of the last prepare(); primed until the next reset()
        self._prepared: tuple[int, int, int] | None = None
        self._primed = False

    @staticmethod
    def _native_stage(group: list[pedalboard.Plugin]) -> Any:
        board = group[0] if len(group) == 1 and isinstance(group[0], pedalboard.Pedalboard) \
            else pedalboard.Pedalboard(group)
        return FixedBlockStage(board) if is_latent(board) else board

    # -- pedalboard semantics ----------------------------------------------------------------
    def process(self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """Process ``input_array`` float32 ``(channels, samples)`` or ``(samples,)``.

        ``reset=True``: every stage is reset first and the whole buffer is latency compensated:
        the output is aligned with the input. ``reset=False``: streaming; the output has as many
        samples as the input, delayed by :attr:`latency_samples`.
        """
        x, mono = as_input(input_array)
        if not isinstance(buffer_size, (int, np.integer)) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a whole number of samples >= 1, got "
                             f"{buffer_size!r}")
        if reset:
            self.reset()
            y = x
            upstream = 0  # streaming latency before this stage: it fixes the stage's hop grid
            for stage in self.stages:
                pad = 0 if isinstance(stage, (pedalboard.Plugin, FixedBlockStage)) else upstream
                if pad:
                    y = np.concatenate([np.zeros((y.shape[0], pad), np.float32), y], axis=1)
                y = _as_2d(stage.process(y, sample_rate, buffer_size=buffer_size, reset=True))
                y = y[:, pad:]
                upstream += _known_latency(stage)
        else:
            key = (int(sample_rate), x.shape[0])
            if self._prepared is None or self._prepared[:2] != key:
                block = self.internal_block_size or max(1, min(x.shape[1], buffer_size))
                self.prepare(sample_rate, x.shape[0], block, buffer_size)
            elif not self._primed:  # after reset(): same block size, re-prime
                self.prepare(sample_rate, x.shape[0], self._prepared[2], buffer_size)
            y = x
            for stage in self.stages:
                if isinstance(stage, pedalboard.Plugin):
                    check_block_shape(y)
                y = channels_first(stage.process(y, sample_rate, buffer_size=buffer_size,
                                                 reset=False), x.shape[0])
                if y.shape[1] != x.shape[1]:
                    raise RuntimeError(
                        f"stage {type(stage).__name__} returned {y.shape[1]} samples for "
                        f"{x.shape[1]} in streaming mode; if it is a native plugin with latency, "
                        "report it so is_latent() knows it")
        return y[0] if mono else y

    __call__ = process

    def prepare(self, sample_rate: float, num_channels: int, block_size: int,
                buffer_size: int = 8192) -> "Chain":
        """Get every stage ready to stream at ``sample_rate`` with ``num_channels``.

        ``block_size`` is the internal fixed block size ``K`` for latent native groups (unless
        ``internal_block_size`` was given); their latency is measured here. Groups without
        latency are primed with ``buffer_size`` zeros: pedalboard re-prepares a plugin, and
        loses its filter state, whenever a streamed block is larger than any before.
        Called by the first ``process(..., reset=False)``.
        """
        k = self.internal_block_size or int(block_size)
        for stage in self.stages:
            if isinstance(stage, (FixedBlockStage, Chain)):
                stage.prepare(sample_rate, num_channels, k)
            elif isinstance(stage, pedalboard.Plugin):
                stage.reset()
                stage.process(np.zeros((num_channels, buffer_size), np.float32), sample_rate,
                              buffer_size=buffer_size, reset=False)
        self._prepared = (int(sample_rate), int(num_channels), k)
        self._primed = True
        return self

    def reset(self) -> None:
        """Clear all state; the next streamed block starts a new stream (with the same internal
        block size, hence the same latency, unless the rate or channel count changes)."""
        for stage in self.stages:
            stage.reset()
        self._primed = False

    @property
    def latency_samples(self) -> int:
        """Total streaming latency in samples: the sum over stages.

        Latent native groups are measured by :meth:`prepare` (done by the first streamed
        block); reading this before that raises a RuntimeError that says so.
        """
        return sum(int(getattr(stage, "latency_samples", 0)) for stage in self.stages
                   if not isinstance(stage, pedalboard.Plugin))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ if not isinstance(s, pedalboard.Pedalboard)
                          else f"Pedalboard({len(s)})" for s in self.stages)
        return f"<rtbwe.Chain stages=[{names}]>"


def _known_latency(stage: Any) -> int:
    """Streaming latency of ``stage`` if known now, else 0 (an unmeasured latent group)."""
    if isinstance(stage, pedalboard.Plugin):
        return 0
    try:
        return int(stage.latency_samples)
    except RuntimeError:
        return 0


class Delay:
    """A pure delay processor: ``latency_samples = delay_samples``.

    Streaming (``reset=False``) returns the input delayed by ``delay_samples``; whole-buffer
    (``reset=True``) returns it unchanged, latency compensated like every processor. Useful to
    align a dry signal with a wet one, and as a processor of known latency in tests.
    """

    def __init__(self, delay_samples: int) -> None:
        if delay_samples < 0:
            raise ValueError("delay_samples must be >= 0")
        self.delay_samples = int(delay_samples)
        self._history: np.ndarray | None = None  # (channels, delay_samples)

    @property
    def latency_samples(self) -> int:
        return self.delay_samples

    def reset(self) -> None:
        self._history = None

    def process(self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """``input_array`` float32 ``(channels, n)`` or ``(n,)`` -> same shape."""
        x, mono = as_input(input_array)
        if reset:
            self.reset()
            y = x.copy()
        else:
            if self._history is None or self._history.shape[0] != x.shape[0]:
                self._history = np.zeros((x.shape[0], self.delay_samples), np.float32)
            joined = np.concatenate([self._history, x], axis=1)
            y = joined[:, :x.shape[1]]
            self._history = joined[:, x.shape[1]:].copy()
        return y[0] if mono else y

    __call__ = process

