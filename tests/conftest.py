"""What every test shares: the order they run in, and their threads under pytest-xdist."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs two processes), each process and what it starts (a `run`
    driver, a local-executor trial) gets its share of the cores as torch threads: two processes each
    spinning up every core's worth of OpenMP threads made the in-process training tests up to 10x
    slower (ResNet-1202's forward and backward: under 2.8 s in one process, 29 s beside another;
    2-7 s with the threads shared)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, so that pytest-xdist's processes start the long end-to-end runs early
    and fill the rest of their time with the quick tests, instead of finding a long one left at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
