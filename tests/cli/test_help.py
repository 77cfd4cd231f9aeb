"""Help texts and docs name only modules and flags that exist.

Every command's `--help` may name its own flags, and other commands' flags only in a `ganprint <command> --flag`
form, whose flags must be that command's. The docs (README.md, docs/*.md) are held to the second rule. A
`ganprint.<module>` anywhere in them must import (or be an attribute of what imports), unless it is one of the
metadata keys that ganprint writes into its files ("ganprint.kind", ...).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ganprint.cli import main, vocabulary

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Keys of the metadata in ganprint's exports and records: "ganprint.<key>", not modules.
META_KEYS = {"aborted", "base_model_sha256", "bits", "config", "created", "exported_from", "fingerprint", "format",
             "fp_id", "git_sha", "imported_from", "kimg", "kind", "resolution", "source", "source_files", "step",
             "train", "train_config", "version"}
_MODULE = re.compile(r"(?<![\w./-])ganprint(?:\.[A-Za-z_]\w*)+")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# `ganprint CMD ...` or `python -m ganprint CMD ...`, up to the end of the command (a closing backtick, a shell
# separator or a comment)
_INVOCATION = re.compile(r"(?<![\w./-])ganprint((?:\s+[a-z][a-z0-9-]*)+)([^`|;#&)]*)")
_UNIVERSAL = {"--help", "--version"}
# Another program's flags in an example ("torchrun --standalone --nproc_per_node 2 -m ganprint embed ..."): up to
# the `ganprint` it runs, the end of the line or of the inline code
_EXTERNAL = re.compile(r"\b(?:torchrun|python|pip|pytest|curl|git|uvicorn|docker)\b[^\n`]*?"
                       r"(?=(?:-m\s+)?ganprint\b|$|`)", re.MULTILINE)


def _flags(cmd: click.Command) -> set[str]:
    """Every spelling of every option of `cmd`, hidden ones included (they exist)."""
    return {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", [])) if o.startswith("--")}


def _resolve(words: list[str]) -> tuple[str, click.Command] | None:
    """The command that `ganprint <words...>` runs and its path, or None when `words` names no command."""
    cmd: click.Command = main
    path: list[str] = []
    for w in words:
        if not isinstance(cmd, click.Group) or w not in cmd.commands:
            break
        cmd = cmd.commands[w]
        path.append(w)
    return (" ".join(path), cmd) if path else None


def _logical_lines(text: str) -> list[str]:
    """Lines of `text` with shell continuations (a trailing backslash) joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def invocation_problems(text: str) -> list[str]:
    """'ganprint CMD --flag' forms in `text` whose flag CMD does not have (or that name no command at all)."""
    problems = []
    for line in _logical_lines(text):
        for m in _INVOCATION.finditer(line):
            words = m.group(1).split()
            found = _resolve(words)
            if found is None:  # prose such as "ganprint is ..." names no command
                continue
            path, cmd = found
            rest = " ".join(words[len(path.split()):]) + m.group(2)
            for flag in _FLAG.findall(rest):
                if flag not in _flags(cmd) | _UNIVERSAL:
                    problems.append(f"`ganprint {path}` has no {flag}: {line.strip()[:120]}")
    return problems


def module_problems(text: str) -> list[str]:
    """`ganprint.<module>` names in `text` that do not import."""
    problems = []
    for name in sorted(set(_MODULE.findall(text))):
        parts = name.split(".")
        if parts[1] in META_KEYS and not _resolves(parts[:2]):
            continue
        if not _resolves(parts):
            problems.append(f"{name} does not exist")
    return problems


def _resolves(parts: list[str]) -> bool:
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _own_flag_problems(path: str, cmd: click.Command, text: str) -> list[str]:
    """Flags in the help of `cmd` outside a `ganprint CMD` form that are not its own."""
    outside = _INVOCATION.sub(" ", _EXTERNAL.sub(" ", "\n".join(_logical_lines(text))))
    return [f"`{path} --help` names {flag}, which `{path}` does not have"
            for flag in sorted(set(_FLAG.findall(outside)) - _flags(cmd) - _UNIVERSAL)]


def _all_commands() -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = [("", main)]

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, cmd in sorted(group.commands.items()):
            out.append((" ".join((*prefix, name)), cmd))
            if isinstance(cmd, click.Group):
                walk(cmd, (*prefix, name))

    walk(main, ())
    return out


@pytest.mark.parametrize("path,cmd", _all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_commands_help_names_only_flags_and_modules_that_exist(path, cmd):
    res = CliRunner().invoke(main, [*path.split(), "--help"], terminal_width=400)
    assert res.exit_code == 0, res.output
    text = res.output
    problems = invocation_problems(text) + module_problems(text)
    if not isinstance(cmd, click.Group):
        problems += _own_flag_problems(path, cmd, text)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_name_only_flags_and_modules_that_exist(doc):
    text = doc.read_text(encoding="utf-8")
    problems = invocation_problems(text) + module_problems(text)
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_checks_catch_what_they_are_for():
    # a flag of another command, a flag no command has, a module that moved, and what is fine
    assert invocation_problems("ganprint embed --model m --bogus 1") == [
        "`ganprint embed` has no --bogus: ganprint embed --model m --bogus 1"]
    assert invocation_problems("run `ganprint detect --embedded x`, then `ganprint embed --identical`") == []
    assert invocation_problems("ganprint dataset from-images \\\n    --data a --outdir b --count 3")
    assert _own_flag_problems("embed", dict(vocabulary.leaves(main))["embed"],
                              "torchrun --standalone --nproc_per_node 2 -m ganprint embed --skip-bad") == []
    assert module_problems("see ganprint.augment and ganprint.core.paths.OutputFolder, key ganprint.kind") == [
        "ganprint.augment does not exist"]
    leaves = dict(vocabulary.leaves(main))
    assert _own_flag_problems("embed", leaves["embed"], "like --model, unlike --generator") == [
        "`embed --help` names --generator, which `embed` does not have"]


@pytest.mark.parametrize("command, module", [("train", "ganprint.artificial.config"), ("train-gan", "ganprint.gan.config"),
                                             ("train-scalable", "ganprint.scalable.config"),
                                             ("train-diffusion", "ganprint.diffusion.config")])
def test_train_help_lists_every_preset_of_the_registry(command, module):
    text = " ".join(CliRunner().invoke(main, [command, "--help"], terminal_width=200).output.split())
    missing = [p for p in importlib.import_module(module).PRESETS if p not in text]
    assert not missing, f"{command} --help does not name the presets {missing}"


def test_serve_help_shows_every_environment_variable_it_promises():
    text = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    cmd = main.commands["serve"]
    envvars = [p.envvar for p in cmd.params if getattr(p, "envvar", None)]
    assert len(envvars) >= 20 and "environment variable shown in --help" in text
    assert not [e for e in envvars if f"env var: {e}" not in " ".join(text.split())]
