"""The `ganprint` command line: one click group, one module per package (artificial, data, gan, scalable,
evaluation, demo, service).

Each module in `_COMMAND_MODULES` exposes `COMMANDS`, a list of click commands or groups; nothing
imports this package.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import traceback

import click
from safetensors import SafetensorError

from ganprint._version import __version__
from ganprint.core import dist, progress
from ganprint.core.errors import GanprintError
from ganprint.cli import vocabulary

_COMMAND_MODULES = ("artificial", "data", "gan", "scalable", "diffusion", "evaluation", "demo", "service")


# errnos of a full disk or a file-size limit: the fix is space, not permissions
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _os_error_line(e: OSError) -> str | None:
    """One line for an OSError: it names the file where the error carries one; without a name only a full disk
    or an I/O error is expected (every writer in ganprint names its file), anything else is a bug."""
    reason = e.strerror or str(e)
    if e.errno in _FULL:
        what = f"cannot write {e.filename}: {reason}" if e.filename else f"a write failed: {reason}"
        return f"{what} (the disk is full or a file-size limit was reached): free some space, then re-run the same " \
               "command; finished work is kept"
    if e.filename is None:
        return f"input/output error: {reason}; check the disks, then re-run the same command" \
            if e.errno == errno.EIO else None
    return f"{e.filename}: {reason}; check the path and its permissions, then re-run the same command"


def _expected_failure_line(e: Exception) -> str | None:
    """The one line for an expected failure class (user input, the machine's limits), or None for a bug."""
    if isinstance(e, GanprintError):
        return str(e)
    if isinstance(e, OSError):
        return _os_error_line(e)
    if isinstance(e, SafetensorError):  # a safetensors write or read that ganprint did not label with its file
        return f"a safetensors file could not be read or written: {e}; check the disk and the paths given"
    torch = sys.modules.get("torch")  # loaded by any command that could run out of GPU memory
    if isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.OutOfMemoryError)):
        return "out of memory: use a smaller --batch-size (or fewer images, a lower resolution), then re-run"
    if isinstance(e, OverflowError):
        return f"a number is too large to compute with ({e}); check the numeric flags"
    return None


class _Group(click.Group):
    """The CLI's one error boundary: every expected failure (GanprintError, a file that cannot be read or written,
    a full disk, no memory, Ctrl-C) ends as one line and exit status 1 (130 for Ctrl-C). Anything else is a bug in
    ganprint: its traceback is printed, then one line saying so, and the exit status is 1."""

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted. Re-run the same command to resume.", err=True)
            sys.exit(130)
        except Exception as e:
            line = _expected_failure_line(e)
            if line is not None:
                line = vocabulary.to_flags(line, vocabulary.current_flags(ctx))
            if line is None:
                traceback.print_exc()
                click.echo(f"Error: internal error ({type(e).__name__}): this is a bug in ganprint, not a problem "
                           "with the input; please report it with the traceback above", err=True)
                sys.exit(1)
            raise click.ClickException(line) from None
        # A command run under torchrun leaves with its process group destroyed (see dist.cleanup). Only after
        # success: a failed rank's peers may still wait inside a collective, which gloo's teardown would wait for.
        dist.cleanup()
        return result


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ganprint")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only, and no progress bars.")
def main(verbose: bool, quiet: bool) -> None:
    """ganprint: fingerprint generative models, then detect and attribute the images they make.

    \b
    Quick start:
      ganprint demo                       # train, embed, detect on built-in sample photos (~10 min CPU)
      ganprint data samples --outdir data/ --count 2000
      ganprint train --data data/ --resolution 32 --outdir runs/fp32 --fingerprint-length 64
      ganprint embed --model runs/fp32/model.safetensors --data photos/ --outdir out/ --identical
      ganprint detect --model runs/fp32/model.safetensors --data out/fingerprinted_images --outdir det/ \\
          --embedded out/embedded_fingerprints.txt

    Run `ganprint COMMAND --help` for the flags and worked examples of each command.
    """
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    progress.set_default(False if quiet else None)  # else GANPRINT_PROGRESS, else where watched


def setup_logging(level: int = logging.INFO) -> None:
    """Human logs go to stderr; ranks other than 0 log warnings only."""
    if int(os.environ.get("RANK", "0")) != 0:
        level = max(level, logging.WARNING)
    root = logging.getLogger()
    if not any(getattr(h, "_ganprint", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._ganprint = True  # type: ignore[attr-defined]
        handler.addFilter(vocabulary.FlagFilter())
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("ganprint").setLevel(level)


for _name in _COMMAND_MODULES:
    _mod = importlib.import_module(f"{__name__}.{_name}")
    for _cmd in getattr(_mod, "COMMANDS", []):
        main.add_command(_cmd)
vocabulary.install(main)
