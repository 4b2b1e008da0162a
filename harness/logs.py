"""Progress output through `logging`: one handler on the `vireid` logger, rank 0 only.

Epoch lines, trial lines and command summaries are log records (logger `vireid.*`, level
INFO) written to stderr, so they show under `dvc repro` (no TTY) as well as in a terminal, and
only once under torchrun. A record is written through `tqdm.write`, which keeps an open
progress bar intact below it.
"""
from __future__ import annotations

import logging
import os
import sys

LOGGER = "vireid"


class RankZeroFilter(logging.Filter):
    """Drop records on every torchrun rank but 0 (`RANK` is set by torchrun before Python starts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return os.environ.get("RANK", "0") == "0"


class TqdmHandler(logging.Handler):
    """Writes to the current `sys.stderr` through `tqdm.write`, so that a live bar is redrawn
    below the line instead of torn (and a replaced stderr, as under pytest, is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # as logging.StreamHandler: a broken stream must not kill training
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    """Install the handler once (idempotent: the CLI and tests may call it repeatedly)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, TqdmHandler) for h in logger.handlers):
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        handler.addFilter(RankZeroFilter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger


def is_tty() -> bool:
    """A bar only makes sense on a terminal; `dvc repro`, CI and `| tee` get the lines alone."""
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
