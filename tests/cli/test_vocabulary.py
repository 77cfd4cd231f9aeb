"""Library messages name fields; the CLI writes flags in their place and takes old flags as hidden aliases."""

from __future__ import annotations

import logging

import click
import pytest
from click.testing import CliRunner

from ganprint.cli import main, vocabulary
from ganprint.core.errors import GanprintError


def _group() -> click.Group:
    @click.group(cls=type(main))
    def root() -> None:
        pass

    @root.command()
    @click.option("--batch-size", type=int, default=1)
    @click.argument("out")
    def run(batch_size: int, out: str) -> None:
        logging.getLogger("ganprint.test").warning("`batch_size` is %d", batch_size)
        raise GanprintError(f"`batch_size` {batch_size} is too large for `out` {out}; `unknown` stays")

    vocabulary.install(root, {"run": {"--batch": "--batch-size"}})
    return root


def test_an_error_names_the_commands_flags_not_the_fields():
    res = CliRunner().invoke(_group(), ["run", "--batch-size", "3", "x"])
    assert res.exit_code == 1
    assert "--batch-size 3 is too large for OUT x; `unknown` stays" in res.output


def test_an_old_flag_works_warns_and_is_not_in_help():
    g = _group()
    res = CliRunner().invoke(g, ["run", "--batch=4", "x"])
    assert "--batch is the old name of --batch-size" in res.output
    assert "--batch-size 4 is too large" in res.output
    assert "--batch " not in CliRunner().invoke(g, ["run", "--help"]).output


def test_values_after_a_double_dash_are_not_renamed():
    assert vocabulary.rename_aliases(["--old", "1", "--", "--old"], {"--old": "--new"}) == ["--new", "1", "--", "--old"]


def test_log_lines_name_flags(caplog):
    f = vocabulary.FlagFilter()
    rec = logging.LogRecord("ganprint", logging.INFO, __file__, 1, "`batch_size` is %d", (3,), None)
    with click.Context(click.Command("x")) as ctx:
        ctx.meta["ganprint.flags"] = {"batch_size": "--batch-size"}
        f.filter(rec)
    assert rec.getMessage() == "--batch-size is 3"


@pytest.mark.parametrize("path,aliases", sorted(vocabulary.ALIASES.items()))
def test_every_alias_names_a_real_command_and_flag(path, aliases):
    leaves = dict(vocabulary.leaves(main))
    assert path in leaves, f"ALIASES names no command {path!r}"
    flags = {o for p in leaves[path].params for o in getattr(p, "opts", [])}
    for old, new in aliases.items():
        assert new in flags and old not in flags, (path, old, new)
