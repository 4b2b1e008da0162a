"""Errors raised by the dataset layer."""
from __future__ import annotations

__all__ = ["DatasetError", "DatasetWarning"]


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or inconsistent.

    The message names the offending file (or folder) and says what was expected.
    It is a ``ValueError`` so that the CLI reports it as a user error (exit code 2).
    """


class DatasetWarning(UserWarning):
    """A non-fatal dataset problem (e.g. an identity seen in one modality only)."""
