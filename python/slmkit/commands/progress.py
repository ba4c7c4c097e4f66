"""A one-line progress bar on stderr, for the long commands (eval, compare, quantize)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """Call with (done, total); redraws one stderr line and ends it when done == total."""

    def __init__(self, label: str, width: int = 30, stream=None):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.start, self.last = time.perf_counter(), 0

    def __call__(self, done: int, total: int) -> None:
        if done < self.last:                      # a new pass (e.g. mixed precision's second)
            self.start = time.perf_counter()
        self.last = done
        if done < total and not self.stream.isatty():
            return                                # a log file gets only the finished line
        filled = self.width * done // max(total, 1)
        elapsed = time.perf_counter() - self.start
        line = f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {elapsed:.0f}s"
        self.stream.write(line)
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
