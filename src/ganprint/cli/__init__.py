"""The `ganprint` command line: one click group, one module per package (artificial, data, gan, scalable,
evaluation, demo, service, verification).

Each module in `_COMMAND_MODULES` exposes `COMMANDS`, a list of click commands or groups; nothing
imports this package. The modules are imported when their command runs, not before: `_COMMANDS` names every
command with its module and the first sentence of its help, which is all `ganprint --help` shows, so the help and
a command's start-up do not pay for the other commands' imports (torch, matplotlib, kornia, the service).
tests/cli/test_lazy.py checks the table against the commands themselves.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import traceback

from collections.abc import Iterator, MutableMapping

import click

from ganprint._version import __version__
from ganprint.core import progress
from ganprint.core.errors import GanprintError
from ganprint.cli import vocabulary

_COMMAND_MODULES = ("artificial", "data", "gan", "scalable", "diffusion", "latent", "evaluation", "demo", "service",
                    "provenance", "verification", "latent_fingerprint")

# name -> (module, the first sentence of its help: what `ganprint --help` lists); tests/cli/test_lazy.py keeps it true
_COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("artificial", "Embed fingerprints into every image under --data."),
    "detect": ("artificial", "Decode the fingerprint of every image under --data, and test it against a reference."),
    "train": ("artificial", "Train the fingerprint encoder/decoder on a folder of images."),
    "import-agf": ("artificial", "Convert original ArtificialGANFingerprints checkpoints into a ganprint export."),
    "export": ("artificial", "Write one part of a trained model as its own export, e.g. a decoder-only file for "
                             "verifiers."),
    "data": ("data", "Sample data built from photos shipped inside installed packages (no download)."),
    "dataset": ("data", "Build packed training sets (images.npy + dataset.json), read by `train-scalable` and "
                        "friends."),
    "train-gan": ("gan", "Train a StyleGAN2 generator on images (e.g. fingerprinted ones); exports the EMA "
                         "generator."),
    "generate": ("gan", "Generate images; each image is a pure function of its seed (file seed<seed:06d>.png)."),
    "train-scalable": ("scalable", "Train a generator whose every image carries its fingerprint (Yu et al., ICLR "
                                   "2022)."),
    "issue": ("scalable", "Issue a fingerprinted model: register a fresh fingerprint and write its standalone "
                          "generator or decoder."),
    "attribute": ("scalable", "Attribute images to the issued model whose fingerprint they carry, or to `unknown`."),
    "registry": ("scalable", "Inspect, migrate, export and import a fingerprint registry (SQLite path or "
                             "postgresql:// URL)."),
    "train-diffusion": ("diffusion", "Train a denoising diffusion UNet on images; exports its EMA weights (kind "
                                     "diffusion-unet)."),
    "train-autoencoder": ("latent", "Train the autoencoder of a latent diffusion model on images; exports its EMA "
                                    "weights (kind latent-autoencoder)."),
    "train-latent": ("latent", "Train a latent diffusion UNet on the latents of a frozen autoencoder; exports UNet "
                               "and autoencoder in one file (kind latent-diffusion)."),
    "export-diffusers": ("diffusion", "Write a diffusion export as a diffusers pipeline folder with a model card."),
    "train-latent-fingerprint": ("latent_fingerprint", "Fine-tune a latent autoencoder's decoder so that every image "
                                                       "it decodes carries a fingerprint."),
    "evaluate": ("evaluation", "Measure how well fingerprints survive image (and model) perturbations, and write a "
                               "report."),
    "adversary": ("evaluation", "Forge and remove fingerprints as an adversary would, and measure how often the "
                                "decision is fooled."),
    "metrics": ("evaluation", "Detection statistics, FID/KID, and the list of attacks."),
    "demo": ("demo", "Train a 32-px fingerprint autoencoder on sample photos, embed, detect, report (about 10 min on "
                     "2 CPU cores)."),
    "serve": ("service", "Run the provenance service: HTTP API under /v1, API docs at /docs, a web page at /."),
    "token": ("service", "Tokens for the service: issuing, downloads, metrics (scoped, with expiry, revocable)."),
    "sign-c2pa": ("provenance", "Sign copies of fingerprinted images with a C2PA manifest whose soft binding is "
                                "their fingerprint."),
    "check": ("verification", "Check images for a fingerprint: one line per image on stdout, the decision in the "
                              "exit status."),
}


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
    safetensors = sys.modules.get("safetensors")  # loaded by any command that reads or writes an export
    if safetensors is not None and isinstance(e, safetensors.SafetensorError):
        # a safetensors write or read that ganprint did not label with its file
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
    ganprint: its traceback is printed, then one line saying so, and the exit status is 1. A command may name
    another status for its failures in an `error_status` attribute (`check`: 2, since its 1 means "not detected")."""

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted. Re-run the same command to resume.", err=True)
            sys.exit(130)
        except Exception as e:
            status = getattr(self.commands.get(ctx.invoked_subcommand or ""), "error_status", 1)
            line = _expected_failure_line(e)
            if line is not None:
                line = vocabulary.to_flags(line, vocabulary.current_flags(ctx))
            if line is None:
                traceback.print_exc()
                click.echo(f"Error: internal error ({type(e).__name__}): this is a bug in ganprint, not a problem "
                           "with the input; please report it with the traceback above", err=True)
                sys.exit(status)
            failure = click.ClickException(line)
            failure.exit_code = status
            raise failure from None
        # A command run under torchrun leaves with its process group destroyed (see dist.cleanup). Only after
        # success: a failed rank's peers may still wait inside a collective, which gloo's teardown would wait for.
        dist = sys.modules.get("ganprint.core.dist")  # loaded by every command that can run under torchrun
        if dist is not None:
            dist.cleanup()
        return result


class _Commands(MutableMapping):
    """The group's commands by name, each module imported on the first look-up of one of its commands (`_COMMANDS`
    names them all). Listing the names imports nothing; iterating over the items imports every module."""

    def __init__(self, table: dict[str, tuple[str, str]]):
        self.table, self.loaded = table, {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded and name in self.table:
            for cmd in _import_commands(self.table[name][0]):
                vocabulary.install_command(cmd)
                self.loaded.setdefault(cmd.name, cmd)
        return self.loaded[name]

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self.loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self.table or name in self.loaded

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.table, *self.loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self.table, *self.loaded]))


def _import_commands(module: str) -> list[click.Command]:
    """The `COMMANDS` of `ganprint.cli.<module>`; the names come from `_COMMAND_MODULES`, where the layering test
    reads them."""
    for name in _COMMAND_MODULES:
        if name == module:
            return importlib.import_module(f"{__name__}.{name}").COMMANDS
    raise KeyError(module)


class _LazyGroup(_Group):
    """The top-level group: commands from `_Commands`, and a command list written from `_COMMANDS`' first sentences
    (click's own formatting, on stand-in commands that carry only that sentence), so that `--help` imports none."""

    def __init__(self, name: str | None = None, **attrs) -> None:
        super().__init__(name, **attrs)
        self.commands = _Commands(_COMMANDS)  # replaces click's plain dict: look-ups import on demand

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = {name: click.Command(name, help=text) for name, (_, text) in _COMMANDS.items()}
        click.Group(self.name, commands=listed).format_commands(ctx, formatter)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
