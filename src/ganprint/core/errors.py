"""User-facing errors. The CLI prints them as one clear line (no traceback) and exits with status 1."""


class GanprintError(ValueError):
    """Base class of errors caused by user input (bad file, flag, or combination); the message says what to do."""
