"""Progress off a terminal: a plain line every :data:`EVERY_SECONDS` of a long loop (no
``\\r`` bars in CI logs and piped output, and never minutes of silence)."""

from __future__ import annotations

import sys
import time

EVERY_SECONDS = 10.0


class Heartbeat:
    """``tick()`` once per batch; prints ``desc: i/total batches, S s`` to stderr when
    ``EVERY_SECONDS`` passed since the last line (or the start)."""

    def __init__(self, desc: str, total: int | None, enabled: bool) -> None:
        self.desc, self.total, self.enabled = desc, total, enabled
        self.done = 0
        self.started = self.last = time.perf_counter()

    def tick(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last >= EVERY_SECONDS:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.done}{of} batches, {now - self.started:.0f} s",
                  file=sys.stderr, flush=True)
