"""The training state: every resumable thing of a run in one file, `training-state-<step:08d>.pt`.

Parts are objects with `state_dict()` / `load_state_dict()` (modules, optimisers, loss scalers, EMA, schedules);
counters are the step, the images seen, the seconds trained and a trainer's own scalars. Nothing random is
saved: every draw is re-derived from (seed, rank, step), so resuming from a state continues the same run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from ganprint.core import dist
from ganprint.core.artifacts import latest_training_state, load_training_state, save_training_state
from ganprint.core.errors import GanprintError
from ganprint.training.run import write_error

log = logging.getLogger(__name__)


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class TrainingState:
    """The parts and counters of a run; `restore()` loads the newest state of `outdir`, `save()` writes one."""

    def __init__(self, outdir: str | os.PathLike, parts: dict[str, Stateful], **counters: Any):
        self.outdir = Path(outdir)
        self.parts = parts
        self.step, self.nimg, self.elapsed = 0, 0, 0.0
        self.counters: dict[str, Any] = dict(counters)  # a trainer's own scalars, with their fresh-run values

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: part.state_dict() for name, part in self.parts.items()}
        out.update(step=self.step, nimg=self.nimg, elapsed=self.elapsed, counters=dict(self.counters))
        return out

    def export_metadata(self, seed: int) -> dict[str, str]:
        """What a snapshot export records of its training: kimg, seed and step (string metadata)."""
        return {"ganprint.train.kimg": f"{self.nimg / 1000:.3f}", "ganprint.train.seed": str(seed),
                "ganprint.train.step": str(self.step)}

    def load_state_dict(self, state: dict[str, Any], source: Path | str = "the training state") -> None:
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise GanprintError(f"{source} lacks {', '.join(missing)}: it was written by another trainer or "
                                "version; use a new `outdir`")
        try:
            for name, part in self.parts.items():
                part.load_state_dict(state[name])
            # States of the stega trainer written before this kit have no image count (nothing reads it there).
            self.step, self.nimg = int(state["step"]), int(state.get("nimg", 0))
            self.elapsed = float(state["elapsed"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise GanprintError(f"{source} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                "it was written by another trainer or version: use a new `outdir`") from None
        self.counters.update(state.get("counters", {}))

    def restore(self) -> Path | None:
        """Load the newest training state of the run folder, if any; returns its path."""
        path = latest_training_state(self.outdir)
        if path is None:
            return None
        try:
            state = load_training_state(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
            raise GanprintError(f"{path} cannot be read ({type(e).__name__}); delete it to resume from the "
                                "state before it, or use a new `outdir`") from None
        self.load_state_dict(state, path)
        log.info("resuming from %s at step %d (%.3f kimg)", path, self.step, self.nimg / 1000)
        return path

    def save(self) -> Path:
        """Rank 0 writes the state atomically (keeping the two newest); every rank waits for it."""
        path = self.outdir / f"training-state-{self.step:08d}.pt"
        if dist.get_rank() == 0:
            try:
                save_training_state(self.outdir, self.step, self.state_dict())
            except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
                raise write_error(e, self.outdir, path) from None
        dist.barrier()
        return path


class TensorSlot:
    """A lone tensor (e.g. a running mean kept by a loss) as a part of the training state."""

    def __init__(self, owner: Any, attr: str):
        self.owner, self.attr = owner, attr

    def state_dict(self) -> dict:
        return {"value": getattr(self.owner, self.attr).detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        current = getattr(self.owner, self.attr)
        setattr(self.owner, self.attr, state["value"].to(current.device, current.dtype))
