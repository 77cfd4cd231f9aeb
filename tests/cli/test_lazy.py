"""The lazy command group: `ganprint --help` imports no command module (and no torch), a command imports its own
module only, and the table `--help` is written from says what the commands themselves say."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ganprint import cli
from ganprint.cli import main

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from ganprint.cli import main
try:
    main({argv!r}, prog_name="ganprint")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m in ("torch", "matplotlib", "kornia") or m.startswith("ganprint."))))
"""


def _imported_by(argv: list[str]) -> set[str]:
    """The ganprint modules (and torch, matplotlib, kornia) that a fresh `ganprint ARGV` process has imported when it
    ends."""
    res = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.splitlines()[-1]))


def test_help_imports_no_command_module_and_no_torch():
    loaded = _imported_by(["--help"])
    assert "torch" not in loaded and "ganprint.cli" in loaded
    assert not {m for m in loaded if m.startswith("ganprint.cli.") and m != "ganprint.cli.vocabulary"}, loaded


def test_a_command_imports_its_own_module_only():
    loaded = _imported_by(["check", "--help"])
    assert "ganprint.cli.verification" in loaded and "torch" not in loaded
    assert not loaded & {f"ganprint.cli.{m}" for m in cli._COMMAND_MODULES if m != "verification"}
    loaded = _imported_by(["detect", "--help"])
    assert "ganprint.cli.artificial" in loaded and "ganprint.cli.service" not in loaded
    # detect's start-up is torch and the artificial kit, not the whole API (evaluation, diffusion, plots)
    assert not {m for m in loaded if m.split(".")[1:2] in (["api"], ["evaluation"], ["diffusion"], ["demo"])}, loaded
    assert not loaded & {"matplotlib", "kornia"}


def test_the_table_names_every_command_with_its_module():
    for module in cli._COMMAND_MODULES:
        names = {c.name for c in importlib.import_module(f"ganprint.cli.{module}").COMMANDS}
        assert names == {n for n, (m, _) in cli._COMMANDS.items() if m == module}, module


@pytest.mark.parametrize("name", sorted(cli._COMMANDS))
def test_the_listed_help_is_the_commands_own(name):
    real = main.commands[name]
    listed = click.Command(name, help=cli._COMMANDS[name][1])
    assert not real.hidden and not real.deprecated
    for limit in (20, 45, 60, 80, 120, 400):
        assert listed.get_short_help_str(limit) == real.get_short_help_str(limit), (name, limit)


def test_the_help_lists_what_click_would_list():
    """The group's command list, written from the table, equals click's own from the loaded commands."""
    for width in (80, 110, 200):
        lazy = CliRunner().invoke(main, ["--help"], terminal_width=width).output
        eager = click.Group("ganprint", commands=dict(main.commands.items()))
        with click.Context(eager, terminal_width=width, max_content_width=110) as ctx:
            formatter = ctx.make_formatter()
            eager.format_commands(ctx, formatter)
        assert formatter.getvalue() in lazy


def test_an_unknown_command_is_still_a_usage_error():
    res = CliRunner().invoke(main, ["nosuch"])
    assert res.exit_code == 2 and "No such command 'nosuch'" in res.output
