"""`import datasets` must be this repository's package, not the PyPI package of that name."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_resolves_to_repository_package():
    import datasets

    assert datasets.VIREID_PACKAGE is True
    assert Path(datasets.__file__).resolve() == REPO / "datasets" / "__init__.py"


def test_import_from_another_directory(tmp_path):
    code = "import datasets, sys; print(datasets.__file__); print(datasets.VIREID_PACKAGE); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    path, marker, torch_loaded = out.stdout.split()
    assert Path(path).resolve() == REPO / "datasets" / "__init__.py"
    assert marker == "True"
    assert torch_loaded == "False"  # the package's __init__ stays light
