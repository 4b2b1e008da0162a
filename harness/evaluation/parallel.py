"""Run independent blocks of array work on a few threads.

NumPy releases the GIL inside its loops (comparisons, sorts, gathers), so blocks of rows
processed by threads use every core without copying the data to other processes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

__all__ = ["worker_count", "run_all"]


def worker_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_all(tasks: Sequence[Callable[[], None]], workers: int | None = None) -> None:
    """Run every task; the first exception raised by a task is re-raised here."""
    n = min(workers or worker_count(), len(tasks))
    if n <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(max_workers=n) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()
