"""Report generator: turns run metrics (`runs/**/metrics.json`), an Optuna study and the
published numbers (`reports/published_results.csv`) into one Markdown page, one self-contained
HTML page, LaTeX booktabs tables, CSVs and PNG figures. Nothing here retrains anything.

Entry point: :func:`vireid.harness.report.render.build_report` (the `vireid report` command calls it).
pandas, matplotlib, seaborn and optuna are imported lazily by the submodules that need them.
"""
from __future__ import annotations

from typing import Any


class ReportError(ValueError):
    """A user-facing error in the report inputs (no metrics, malformed file, bad study)."""


def build_report(*args: Any, **kwargs: Any) -> dict:
    """See :func:`vireid.harness.report.render.build_report`."""
    from vireid.harness.report.render import build_report as _build

    return _build(*args, **kwargs)


__all__ = ["ReportError", "build_report"]
