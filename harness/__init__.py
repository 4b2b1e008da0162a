"""vireid-bench harness: configuration, training, evaluation, tracking, tuning, reports.

Importing it changes nothing in the process; the `vireid` entry point applies the thread
settings of :mod:`vireid.harness.runtime` before numpy and torch load.
"""
