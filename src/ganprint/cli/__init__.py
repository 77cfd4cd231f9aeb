"""The `ganprint` command line: one click group, one module per package (artificial, data, gan, scalable,
evaluation, demo, service).

Each module in `_COMMAND_MODULES` exposes `COMMANDS`, a list of click commands or groups; nothing
imports this package.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from ganprint._version import __version__
from ganprint.core import dist
from ganprint.core.errors import GanprintError

_COMMAND_MODULES = ("artificial", "data", "gan", "scalable", "diffusion", "evaluation", "demo", "service")


class _Group(click.Group):
    """A group that turns user errors (GanprintError) into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except GanprintError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:
            # A file the library did not check itself: still one line that names it (a bug without a path is
            # left to its traceback).
            if e.filename is None:
                raise
            raise click.ClickException(f"{e.filename}: {e.strerror or e}; check the path and its permissions, then "
                                       "re-run the same command") from None
        except KeyboardInterrupt:
            click.echo("Interrupted. Re-run the same command to resume.", err=True)
            sys.exit(130)
        # A command run under torchrun leaves with its process group destroyed (see dist.cleanup). Only after
        # success: a failed rank's peers may still wait inside a collective, which gloo's teardown would wait for.
        dist.cleanup()
        return result


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ganprint")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def main(verbose: bool, quiet: bool) -> None:
    """ganprint: fingerprint generative models, then detect and attribute the images they make.

    \b
    Quick start:
      ganprint demo                       # train, embed, detect on built-in sample photos (~10 min CPU)
      ganprint data samples data/ --count 2000
      ganprint train --data data/ --resolution 32 --outdir runs/fp32 --fingerprint-length 64
      ganprint embed --model runs/fp32/model.safetensors --data photos/ --outdir out/ --identical
      ganprint detect --model runs/fp32/model.safetensors --data out/fingerprinted_images --outdir det/ \\
          --embedded out/embedded_fingerprints.txt

    Run `ganprint COMMAND --help` for the flags and worked examples of each command.
    """
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def setup_logging(level: int = logging.INFO) -> None:
    """Human logs go to stderr; ranks other than 0 log warnings only."""
    if int(os.environ.get("RANK", "0")) != 0:
        level = max(level, logging.WARNING)
    root = logging.getLogger()
    if not any(getattr(h, "_ganprint", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._ganprint = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("ganprint").setLevel(level)


for _name in _COMMAND_MODULES:
    _mod = importlib.import_module(f"{__name__}.{_name}")
    for _cmd in getattr(_mod, "COMMANDS", []):
        main.add_command(_cmd)
