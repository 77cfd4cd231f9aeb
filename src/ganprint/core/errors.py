"""User-facing errors. The CLI prints them as one clear line (no traceback) and exits with status 1.

Messages name a parameter by its field name in backticks ("`batch_size` must be ..."); the CLI writes the running
command's flag in its place (`ganprint.cli.vocabulary`), a Python caller reads the keyword it passed.
"""

import re

_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # snake_case: an argument's metavar (OUT) is shown as it is


class GanprintError(ValueError):
    """Base class of errors caused by user input (bad file, flag, or combination); the message says what to do."""


def excerpt(text: object, limit: int = 60) -> str:
    """`repr(text)`, cut to about `limit` characters with '...' so that a message quoting user input stays one
    short line."""
    r = repr(str(text))
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def field(name: str) -> str:
    """How a message names the parameter `name`: in backticks when it is a field name ("`seeds`"); anything else
    (a phrase such as "every seed of `seeds`", a metavar such as OUT) unchanged."""
    return f"`{name}`" if _NAME.fullmatch(name) else name
