"""Shared set-up of the benchmarks: machine info (kernel variant, threads) and the machine's
limits measured in the same run (streaming-read bandwidth, int8 dot peak), once per session."""
import pytest

from bench_utils import THREADS, Limits, limits as _limits
from slmkit import _native as nat


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["slmkit"] = {"kernel": nat.kernel_name(), "threads": THREADS,
                              "physical_cores": nat.physical_cores()}


@pytest.fixture(scope="session")
def limits() -> Limits:
    return _limits
