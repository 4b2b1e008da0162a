"""Process-wide settings for thread pools, applied by the `vireid` entry point before any
numerical library loads (no import-time side effects elsewhere).

* ``OPENBLAS_THREAD_TIMEOUT=4``: NumPy's OpenBLAS keeps its worker threads spinning for about
  2**28 cycles (~0.1 s) after every matrix product, on the cores the evaluation's ranking
  threads need right after the distance GEMM; 2**4 cycles lets them sleep at once.

OpenMP's wait policy is left alone: benchmarks/bench_threads.py measured ``OMP_WAIT_POLICY=PASSIVE``
slower than OpenMP's default both on a quiet and on a loaded machine; robustness to load comes from
``train.threads: 1`` instead (see that benchmark and README "Benchmarks").

It is read when the library loads, so it only takes effect before the first ``import
torch`` / ``import numpy``; a value the user has set is kept.
"""
from __future__ import annotations

import os

DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def configure_environment() -> dict[str, str]:
    """Set the defaults that the user has not set; returns the values in force."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in DEFAULTS}
