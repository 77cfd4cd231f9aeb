"""The one tick and snapshot clock of the trainers, and their statistics by name.

Every trainer counts something per step (images seen, or steps) and does things when the count crosses a multiple
of an interval: a tick (a stats row), a snapshot (exports and a training state), a metric. Between snapshots a
training state is also kept by time (`minutes`), at the end of a tick. Rank 0's clock decides for every rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch

from ganprint.core import dist


def images(kimg: float) -> int:
    """An interval in kimg as a whole number of images (at least 1)."""
    return max(1, int(round(kimg * 1000)))


class Clock:
    """Says what is due after a step that brought the count to `count` by `size` (the count per step).

    `every` maps a name ("tick", "snapshot", ...) to its interval in the count's units; 0 means never (but at the
    end of the run, which every name is due at).
    """

    def __init__(self, size: int, minutes: float, **every: int):
        self.size, self.every = size, every
        self.seconds = max(0.0, float(minutes)) * 60
        self.last = time.monotonic()

    def due(self, name: str, count: int, done: bool = False) -> bool:
        every = self.every[name]
        return done or (every > 0 and count // every > (count - self.size) // every)

    def state_due(self) -> bool:
        """Whether `minutes` have passed since the last training state (rank 0's answer)."""
        mine = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        return bool(dist.all_gather_object(mine)[0])

    def reset(self) -> None:
        self.last = time.monotonic()

    def after_step(self, count: int, done: bool, snapshot: Callable[[bool], None], save: Callable[[], object]) -> bool:
        """A snapshot when one is due (and at the end); otherwise, at the end of a tick, a training state when the
        time has come. Returns whether a tick ended (the caller writes its row before calling)."""
        at_tick = self.due("tick", count, done)
        if self.due("snapshot", count, done):
            snapshot(done)
            self.reset()
        elif at_tick and self.state_due():
            save()
            self.reset()
        return at_tick


def mean_over_ranks(stats: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """The all-rank mean of every named scalar (every rank must hold the same names)."""
    keys = sorted(stats)
    values = torch.stack([torch.as_tensor(stats[k], dtype=torch.float64).detach().cpu().reshape(()) for k in keys])
    return dict(zip(keys, dist.all_reduce_mean(values).tolist()))


class Meter:
    """Named scalar statistics collected over a tick; `means()` gives their means and starts the next tick."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: Mapping[str, float]) -> None:
        for k, v in stats.items():
            self.sums[k], self.counts[k] = self.sums.get(k, 0.0) + float(v), self.counts.get(k, 0) + 1

    def means(self, over_ranks: bool = True) -> dict[str, float]:
        """The tick's means (over the ranks too, unless the statistics are already all-rank means)."""
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return mean_over_ranks(out) if over_ranks and out else out
