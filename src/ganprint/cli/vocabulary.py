"""The CLI's half of the one vocabulary: library messages name parameters, the CLI shows flags.

The library never writes a flag. Its errors and log lines name a parameter by its field name in backticks
("`batch_size` must be ..."); the CLI writes the running command's flag in its place ("--batch-size must be ...").
A name the command has no flag for keeps its backticks, which read well in a Python session too.

Old flag names are kept for one release as hidden aliases (`ALIASES`): they work, are not shown by `--help`, and
print a warning naming the new flag.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import click

# command path ("attribute", "registry list") -> {old flag: new flag}; the old ones go in the release after 0.N+1
ALIASES: dict[str, dict[str, str]] = {
    "attribute": {"--decoder": "--model", "--input": "--data"},
    "dataset celeba": {"--num-images": "--limit"},
    "dataset from-images": {"--num-images": "--limit"},
    "detect": {"--num-workers": "--workers"},
    "embed": {"--num-workers": "--workers"},
    "issue": {"--outdir": "--models-dir"},
    "metrics threshold": {"--bits": "--fingerprint-length"},
    "metrics pvalue": {"--bits": "--fingerprint-length"},
    "train-scalable": {"--fingerprint-bits": "--fingerprint-length"},
}

_FIELD = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
_META = "ganprint.flags"


def flag_names(command: click.Command) -> dict[str, str]:
    """{parameter name: how the command line writes it}: '--batch-size' for an option, 'OUT' for an argument."""
    names: dict[str, str] = {}
    # visible parameters first; a hidden one (an older form kept for a release) names its field only if none does
    for p in sorted(command.params, key=lambda p: bool(getattr(p, "hidden", False))):
        if p.name is None or p.name in names:
            continue
        if isinstance(p, click.Argument):
            names[p.name] = p.human_readable_name
        else:
            longs = [o for o in p.opts if o.startswith("--")]
            names[p.name] = (longs or p.opts)[0]
    return names


def to_flags(text: str, names: dict[str, str]) -> str:
    """`text` with every backticked parameter name that `names` knows replaced by its flag."""
    return _FIELD.sub(lambda m: names.get(m.group(1), m.group(0)), text)


def current_flags(ctx: click.Context | None = None) -> dict[str, str]:
    """The flags of the command that is running (empty before one is chosen)."""
    ctx = ctx or click.get_current_context(silent=True)
    return {} if ctx is None else ctx.meta.get(_META, {})


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """(command path, command) of every command below `group` that is not itself a group."""
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


def rename_aliases(args: list[str], aliases: dict[str, str]) -> list[str]:
    """`args` with every old flag (`--old` or `--old=value`) written as its new one, warning once per flag.
    Tokens after `--` are values and are left alone."""
    out, warned = [], set()
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        old, eq, value = arg.partition("=")
        new = aliases.get(old)
        if new is None:
            out.append(arg)
            continue
        if old not in warned:
            warned.add(old)
            click.echo(f"Warning: {old} is the old name of {new}; it still works in this release, use {new}",
                       err=True)
        out.append(new + eq + value)
    return out


def install(group: click.Group, aliases: dict[str, dict[str, str]] | None = None) -> None:
    """Give every command below `group` its aliases (default `ALIASES`) and make its flags known to the error
    boundary and the logs."""
    table = ALIASES if aliases is None else aliases
    for path, cmd in leaves(group):
        _attach(cmd, table.get(path, {}))


def install_command(cmd: click.Command, aliases: dict[str, dict[str, str]] | None = None) -> None:
    """`install` for one top-level command (a leaf or a group), when the lazy group first loads it."""
    table = ALIASES if aliases is None else aliases
    if isinstance(cmd, click.Group):
        for path, leaf in leaves(cmd, (cmd.name,)):
            _attach(leaf, table.get(path, {}))
    else:
        _attach(cmd, table.get(cmd.name, {}))


def _attach(cmd: click.Command, aliases: dict[str, str]) -> None:
    parse_args = cmd.parse_args

    def parse_with_vocabulary(ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_META] = flag_names(cmd)
        return parse_args(ctx, rename_aliases(list(args), aliases))

    cmd.parse_args = parse_with_vocabulary  # type: ignore[method-assign]


class OldPositional(click.Argument):
    """A positional argument kept for one release after its value became an option (`dataset celeba SRC OUT` ->
    `--data`, `--outdir`): optional, left out of the usage line and of the error vocabulary; `take_old` reads it."""

    def __init__(self, param_decls, **attrs):
        super().__init__(param_decls, required=False, **attrs)
        self.hidden = True

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def take_old(new_value, old_value, new: str, old: str):
    """The value of the option `new` (e.g. '--data'), given as itself or as the old positional `old` (e.g. 'SRC'),
    which works with a warning; both, or neither, is a usage error."""
    if old_value is None:
        if new_value is None:
            raise click.UsageError(f"Missing option '{new}'.")
        return new_value
    if new_value is not None:
        raise click.UsageError(f"{old} and {new} name the same thing; give {new} only")
    click.echo(f"Warning: the positional {old} is the old form of {new}; it still works in this release, use {new}",
               err=True)
    return old_value


class FlagFilter(logging.Filter):
    """Writes the running command's flags into log lines, as the error boundary does for errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        names = current_flags()
        if names and "`" in str(record.msg):
            record.msg, record.args = to_flags(record.getMessage(), names), None
        return True
