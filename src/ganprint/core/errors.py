"""User-facing errors. The CLI prints them as one clear line (no traceback) and exits with status 1."""


class GanprintError(ValueError):
    """Base class of errors caused by user input (bad file, flag, or combination); the message says what to do."""


def excerpt(text: object, limit: int = 60) -> str:
    """`repr(text)`, cut to about `limit` characters with '...' so that a message quoting user input stays one
    short line."""
    r = repr(str(text))
    return r if len(r) <= limit else r[:limit - 4] + "...'"
