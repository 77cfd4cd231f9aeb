"""A per-client budget of images on the verify routes: what turns a querying attacker's budget into time.

HopSkipJump removes demo-32's fingerprint through the service's decisions alone within 1000 queries per image
(docs/threat-model.md, "The oracle attacker"); at one image a second it costs minutes instead of a second.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable


class ImageBudget:
    """A token bucket per client, counted in images: `per_minute` images flow in each minute, and a client may hold
    `capacity` of them at most (one request of that many images always fits into a full bucket).

    `take(client, n)` spends n images, or spends nothing and returns the seconds until n would fit. The table keeps
    the `max_clients` most recently seen clients (a forgotten client starts again with a full bucket). The routes
    call it from the event loop; the lock keeps it correct from threads too. Each worker process has its own table.
    """

    def __init__(self, per_minute: float, capacity: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000):
        if per_minute <= 0 or capacity <= 0:
            raise ValueError("per_minute and capacity must be > 0")
        self.rate, self.capacity, self.clock, self.max_clients = per_minute / 60.0, float(capacity), clock, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (images, at time)
        self._lock = threading.Lock()

    def take(self, client: str, n: int) -> float | None:
        """None when `client` may send `n` images now (they are spent); else the seconds to wait."""
        if n > self.capacity:
            raise ValueError(f"{n} images never fit into a bucket of {self.capacity:g}")
        with self._lock:
            now = self.clock()
            have, then = self._buckets.pop(client, (self.capacity, now))
            have = min(self.capacity, have + (now - then) * self.rate)
            wait = None if n <= have else (n - have) / self.rate
            self._buckets[client] = (have - n if wait is None else have, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
