"""The service's log lines: one per event, never a secret.

`quiet` logs a kind of event (a refused connection, a slow client cut off, an aborted upload, the registry
unreachable) at most once every 10 s, counting the lines it left out, so a flood of bad clients cannot flood the
log. `RedactQuery` removes query strings from uvicorn's access-log lines (a token in a URL is never written).
Lines go to uvicorn's "uvicorn.error" logger, which uvicorn configures in every worker process.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("uvicorn.error")

ABORTED = "ganprint.aborted"  # request scope key: why protocol.py cut the connection (the app then logs no more)


class Quiet:
    """One log line per kind of event at most every `every` seconds, counting the ones left out."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()  # routes log from the thread pool too

    def warning(self, kind: str, msg: str, *args) -> None:
        """Log `msg % args` at WARNING unless a `kind` line was logged less than `every` seconds ago."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.every) < self.every:
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return
            more = self._left_out.pop(kind, 0)
            self._last[kind] = now
        log.warning(msg + (f" (and {more} more like it in the last {self.every:g} s)" if more else ""), *args)


quiet = Quiet()


class RedactQuery(logging.Filter):
    """Replaces the query string in uvicorn's access-log lines by "?[redacted]"."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn's access line: (client, method, path?query, http version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[redacted]", *args[3:])
        return True


def install_access_log_redaction() -> None:
    """Add RedactQuery to uvicorn's access logger, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())
