"""The harness's name for :mod:`vireid.common.io` (atomic file writes), which lives in the
bottom layer so that datasets/ and methods/ can write atomically without importing the harness."""
from vireid.common.io import (FILE_MODE, atomic_path, atomic_save, atomic_write_bytes, atomic_write_json,
                              atomic_write_text, remove_stale_temps)

__all__ = ["FILE_MODE", "atomic_path", "atomic_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "remove_stale_temps"]
