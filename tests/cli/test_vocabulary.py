"""Library messages name fields; the CLI writes flags in their place and takes old flags as hidden aliases."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import ganprint
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


def _old_positional_group() -> click.Group:
    @click.group(cls=type(main))
    def root() -> None:
        pass

    @root.command()
    @click.option("--outdir")
    @click.argument("old_outdir", cls=vocabulary.OldPositional)
    def run(outdir, old_outdir) -> None:
        click.echo(f"outdir={vocabulary.take_old(outdir, old_outdir, '--outdir', 'OUTDIR')}")

    vocabulary.install(root, {})
    return root


def test_an_old_positional_works_warns_and_is_not_in_the_usage_line():
    g = _old_positional_group()
    new = CliRunner().invoke(g, ["run", "--outdir", "a"])
    assert new.exit_code == 0 and new.output == "outdir=a\n", new.output
    old = CliRunner().invoke(g, ["run", "a"])
    assert old.exit_code == 0 and "the positional OUTDIR is the old form of --outdir" in old.output
    assert "outdir=a" in old.output
    both = CliRunner().invoke(g, ["run", "--outdir", "a", "b"])
    assert both.exit_code == 2 and "give --outdir only" in both.output
    neither = CliRunner().invoke(g, ["run"])
    assert neither.exit_code == 2 and "Missing option '--outdir'" in neither.output
    assert "OLD_OUTDIR" not in CliRunner().invoke(g, ["run", "--help"]).output


def test_dataset_commands_take_data_and_outdir_and_their_old_positionals(tmp_path):
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "imgs", n=2, sizes=((20, 24),))
    new = CliRunner().invoke(main, ["dataset", "from-images", "--data", str(tmp_path / "imgs"), "--outdir",
                                    str(tmp_path / "p1"), "--resolution", "8"])
    assert new.exit_code == 0 and "Warning" not in new.output, new.output
    old = CliRunner().invoke(main, ["dataset", "from-images", str(tmp_path / "imgs"), str(tmp_path / "p2"),
                                    "--resolution", "8"])
    assert old.exit_code == 0 and "the positional SRC is the old form of --data" in old.output, old.output
    assert "the positional OUT is the old form of --outdir" in old.output
    # the library names the field; the command shows its flag
    again = CliRunner().invoke(main, ["dataset", "from-images", "--data", str(tmp_path / "imgs"), "--outdir",
                                      str(tmp_path / "p1"), "--resolution", "8"])
    assert again.exit_code == 1 and f"--outdir {tmp_path / 'p1'} already exists" in again.output, again.output
    usage = CliRunner().invoke(main, ["dataset", "celeba", "--help"]).output
    assert "SRC" not in usage.splitlines()[0] and "--data" in usage


# Flags that may appear below cli/ because they are another program's: argv of a subprocess.
SUBPROCESS_ARGV = {("core/runtime.py", "--short"): "git rev-parse --short HEAD (the checkout's commit)"}
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def test_no_flag_names_below_cli():
    """The library names fields (`batch_size`), never flags: only the CLI knows them (`ganprint.cli.vocabulary`)."""
    root = Path(ganprint.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("cli/"):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{rel}:{i}: {flag}" for flag in _FLAG.findall(line) if (rel, flag) not in SUBPROCESS_ARGV]
    assert not found, f"{len(found)} flag names below cli/:\n" + "\n".join(found)


def test_the_flag_scan_sees_flags_and_only_flags():
    assert _FLAG.findall('raise X(f"--batch-size {n}"); a--b; "--"; `--seeds`') == ["--batch-size", "--seeds"]


def test_the_library_names_fields_and_each_command_shows_its_flags(tmp_path):
    """The service's config and core's checks name fields; through `serve` and `demo` they read as flags."""
    res = CliRunner().invoke(main, ["demo", "--outdir", str(tmp_path / "demo"), "--device", "tpu"])
    assert res.exit_code == 1 and "--device 'tpu' is not a device" in res.output, res.output
    pytest.importorskip("uvicorn")  # serve checks its settings once the service extra is there
    missing = str(tmp_path / "missing.safetensors")
    res = CliRunner().invoke(main, ["serve", "--stega-decoder", missing])
    assert res.exit_code == 1 and f"--stega-decoder {missing} does not exist" in res.output, res.output
    (tmp_path / "d.safetensors").write_bytes(b"x")
    res = CliRunner().invoke(main, ["serve", "--stega-decoder", str(tmp_path / "d.safetensors"), "--max-pixels", "100",
                                    "--max-request-pixels", "10"])
    assert "--max-request-pixels (10) must be at least --max-pixels (100)" in res.output, res.output
