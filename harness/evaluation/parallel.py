"""Run independent blocks of array work on a few threads.

NumPy and torch release the GIL inside most of their loops (comparisons, sorts, gathers),
so blocks of rows processed by threads use every core without copying the data to other
processes. Some NumPy functions hold it (``np.repeat``, ``ufunc.at``, ``np.bincount``):
hot loops prefer the GIL-free equivalents in :mod:`vireid.harness.evaluation.ragged`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

__all__ = ["worker_count", "Workers", "run_all", "balanced_blocks"]


def worker_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Workers:
    """One pool of threads for several rounds of tasks (starting a pool costs a few hundred
    microseconds). Calling it runs the tasks and re-raises the first error."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, int(workers or worker_count()))
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, tasks: Sequence[Callable[[], None]]) -> None:
        if self.workers == 1 or len(tasks) <= 1:
            for task in tasks:
                task()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers)
        for future in [self._pool.submit(task) for task in tasks]:
            future.result()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def run_all(tasks: Sequence[Callable[[], None]], workers: int | None = None) -> None:
    """Run every task on ``workers`` threads (default: one per CPU); the first exception
    raised by a task is re-raised here."""
    with Workers(min(workers or worker_count(), max(1, len(tasks)))) as pool:
        pool(tasks)


def balanced_blocks(n: int, size: int, workers: int) -> list[tuple[int, int]]:
    """[r0, r1) ranges of at most about ``size`` rows, as many as a multiple of ``workers``
    when n allows, of equal length (equal shares for the threads)."""
    count = max(1, -(-n // max(1, size)))
    count = min(n, -(-count // workers) * workers)
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
