"""vireid-bench harness: configuration, training, evaluation, tracking, tuning, reports."""
import os

# NumPy's OpenBLAS keeps its worker threads spinning for about 2**28 cycles (~0.1 s) after
# every matrix product; the evaluation's ranking threads, which start right after the
# distance GEMM, would share a core with them. 2**4 cycles lets them sleep at once. OpenBLAS
# reads this when it loads, so it takes effect when harness is imported before numpy (the
# `vireid` command, `python -m vireid.harness`); a value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
