"""The progress bars of the long commands: `tqdm.auto`, so a notebook gets its widget and a terminal a text bar.

Bars go to stderr (stdout stays for a command's JSON and lines) and only on rank 0. Whether one shows: the caller's
`progress` when it says; else the default when set (`set_default`: the CLI's quiet option turns bars off); else
GANPRINT_PROGRESS (1 or 0) when set; else where someone watches: a terminal or a notebook, never a pipe or a CI log.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


ENV = "GANPRINT_PROGRESS"
_default: list[bool | None] = [None]


def set_default(enabled: bool | None) -> None:
    """Show bars (True), never (False), or as GANPRINT_PROGRESS and the place say (None), unless the caller says."""
    _default[0] = enabled


def _watched() -> bool:
    if "ipykernel" in sys.modules:  # a Jupyter kernel: its stderr is no terminal, yet the notebook shows the widget
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _rank() -> int:
    """This process's rank: from `core.dist` where a command loaded it (it imports torch, which printing the CLI's help
    must not), else torchrun's RANK, else 0."""
    dist = sys.modules.get("ganprint.core.dist")
    return dist.get_rank() if dist is not None else int(os.environ.get("RANK", "0") or 0)


def progress_shown(progress: bool | None = None) -> bool:
    """Whether this process draws a bar (see the module's docstring)."""
    if _rank() != 0:
        return False
    if progress is not None:
        return bool(progress)
    if _default[0] is not None:
        return _default[0]
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return _watched()


def progress_bar(total: float | None, desc: str, unit: str = "img", progress: bool | None = None,
                 initial: float = 0, **kwargs: Any):
    """A `tqdm.auto` bar on stderr, disabled where `progress_shown(progress)` says no (a disabled bar costs
    nothing and takes the same calls)."""
    from tqdm.auto import tqdm  # tqdm.auto looks for IPython: only a command that shows progress pays for it

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=not progress_shown(progress), **kwargs)


def status_line(logger: logging.Logger, bar, msg: str, *args: Any) -> None:
    """A status line (a trainer's tick, a batch of images written): on the console only where no bar shows the
    same progress, and always in a run's log.txt (the handler `ganprint.training.run.RunFolder` marks `run_log`)."""
    if bar is None or bar.disable:
        logger.info(msg, *args)
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    record = logger.makeRecord(logger.name, logging.INFO, "(tick)", 0, msg, args, None)
    for handler in logging.getLogger("ganprint").handlers:
        if getattr(handler, "run_log", False):
            handler.handle(record)
