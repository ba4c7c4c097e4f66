"""Helpers shared by the benchmark files (a plain module: a second conftest import would clash
with tests/conftest.py when both folders run in one session)."""
from slmkit import _native as nat

THREADS = sorted({1, max(1, nat.physical_cores())})

_pools = {}


def pool(threads: int) -> nat.Pool:
    """One pool per thread count for the whole session (pools are not created per call)."""
    if threads not in _pools:
        _pools[threads] = nat.Pool(threads)
    return _pools[threads]


class Limits:
    """Streaming-read GB/s and int8 GOPS per thread count: the best seen in the session. The
    int8 probe is cheap (~3 ms a repetition), so it runs again on every request and the peak
    only grows: on a shared VM a single early reading can catch a slow moment (one thread read
    260-420 GOPS here within a minute), which would inflate every fraction after it."""

    def __init__(self):
        self._read, self._int8 = {}, {}

    def read_gbps(self, threads: int) -> float:
        if threads not in self._read:
            self._read[threads] = nat.probe_read_gbps(pool(threads), 256 << 20, reps=5)
        return self._read[threads]

    def int8_gops(self, threads: int) -> float:
        now = nat.probe_int8_gops(pool(threads), 2_000_000, reps=10 if threads in self._int8 else 40)
        self._int8[threads] = max(now, self._int8.get(threads, 0.0))
        return self._int8[threads]


limits = Limits()
