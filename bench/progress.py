"""Progress lines on stderr for long steps (a live line on a terminal, ~10 % steps otherwise)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.start = self._last = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._next_pct = 10

    def add(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        pct = 100 * self.done // max(self.total, 1)
        if self._tty and now - self._last >= 0.25:
            self._last = now
            sys.stderr.write(f"\r  {self._line(now)}")
            sys.stderr.flush()
        elif not self._tty and pct >= self._next_pct and self.done < self.total:
            self._next_pct = pct // 10 * 10 + 10
            sys.stderr.write(f"  {self._line(now)}\n")
            sys.stderr.flush()

    def finish(self) -> float:
        now = time.perf_counter()
        sys.stderr.write(("\r  " if self._tty else "  ") + self._line(now) + " done\n")
        sys.stderr.flush()
        return now - self.start

    def _line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        return (f"{self.label}: {self.done:,}/{self.total:,} ({100 * self.done / max(self.total, 1):5.1f} %, "
                f"{self.done / elapsed:,.0f}/s, {elapsed:,.1f} s)")


def step(message: str) -> None:
    sys.stderr.write(f"==> {message}\n")
    sys.stderr.flush()
