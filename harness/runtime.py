"""Process-wide settings for thread pools, applied by the `vireid` entry point before any
numerical library loads (no import-time side effects elsewhere).

* ``OMP_WAIT_POLICY=PASSIVE``: OpenMP (torch's CPU kernels) otherwise busy-waits between parallel
  regions; with another process on the same cores that collapses 2-thread training of the small
  CPU models by up to 100x (benchmarks/bench_threads.py measures it).
* ``OPENBLAS_THREAD_TIMEOUT=4``: NumPy's OpenBLAS keeps its worker threads spinning for about
  2**28 cycles (~0.1 s) after every matrix product, on the cores the evaluation's ranking
  threads need right after the distance GEMM; 2**4 cycles lets them sleep at once.

Both are read when the libraries load, so they only take effect before the first ``import
torch`` / ``import numpy``; a value the user has set is kept.
"""
from __future__ import annotations

import os

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def configure_environment() -> dict[str, str]:
    """Set the defaults that the user has not set; returns the values in force."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in DEFAULTS}
