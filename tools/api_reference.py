"""Write docs/api.md, the reference of ganprint's Python API, from the public names' signatures and docstrings.

    python tools/api_reference.py            # (re)write docs/api.md
    python tools/api_reference.py --check    # exit 1 when docs/api.md differs from what the code says

The public names are `ganprint.__all__`. The page is generated, so edit the docstrings, not the page;
tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"

HEADER = """# Python API reference

Generated from the docstrings by `tools/api_reference.py` (do not edit by hand: change the docstring and run
`python tools/api_reference.py`). Every name below is importable as `ganprint.<name>`; `import ganprint` loads
none of them until first use. The keyword arguments are the command-line flags with underscores (`--batch-size`
is `batch_size`, see [the glossary](glossary.md)); the README's "Python API" section has a worked example.
"""


def _signature(obj) -> str:
    """The call signature as the source spells it: annotations without quotes, no memory addresses."""
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    sig = re.sub(r"'([^']*)'", r"\1", sig)  # postponed annotations (PEP 563) are strings
    return re.sub(r" at 0x[0-9a-f]+", "", sig)


def _entry(name: str, obj) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function"
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines = [f"## `{name}`", "", "```text", f"{kind} ganprint.{name}{_signature(obj)}", "```", "", doc, ""]
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        lines += ["| field | type | default |", "|---|---|---|"]
        for field in dataclasses.fields(obj):
            if field.default is not dataclasses.MISSING:
                default = repr(field.default)
            else:
                default = "required" if field.default_factory is dataclasses.MISSING else "(a fresh default)"
            lines.append(f"| `{field.name}` | `{str(field.type).strip(chr(39))}` | `{default}` |")
        lines.append("")
    return lines


def render() -> str:
    """The whole page for the ganprint importable here."""
    import ganprint

    names = sorted(ganprint.__all__, key=lambda n: (not n[0].islower(), n))
    lines = [HEADER, "| name | what it does |", "|---|---|"]
    for name in names:
        first = (inspect.getdoc(getattr(ganprint, name)) or "").split("\n\n")[0].replace("\n", " ")
        lines.append(f"| [`{name}`](#{name.lower()}) | {first.replace('|', '/')} |")
    lines.append("")
    for name in names:
        lines += _entry(name, getattr(ganprint, name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with docs/api.md instead of writing it")
    args = ap.parse_args(argv)
    text = render()
    if not args.check:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    old = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
    if old == text:
        return 0
    diff = difflib.unified_diff(old.splitlines(), text.splitlines(), "docs/api.md", "from the docstrings",
                                lineterm="", n=1)
    print("\n".join(list(diff)[:60]))
    print("docs/api.md is out of date: run python tools/api_reference.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
