"""The project installs under one namespace, ``vireid``, so it lives beside Hugging Face's
``datasets`` (and any other top-level ``harness`` or ``methods``) in a researcher's environment."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"harness": "vireid.harness", "methods": "vireid.methods", "datasets": "vireid.datasets",
                "common": "vireid.common"}
SOURCE_DIRS = ["harness", "methods", "datasets", "common", "tests", "benchmarks"]


def test_installed_packages_are_every_package_folder():
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools_cfg["package-dir"] == {v: k for k, v in PACKAGE_DIRS.items()}
    found = set()
    for folder, namespace in PACKAGE_DIRS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((namespace, *rel)))
    assert set(setuptools_cfg["packages"]) == found  # a package folder missing here is not in the wheel


def _bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        bad += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in PACKAGE_DIRS]
    return bad


def test_no_module_imports_a_top_level_project_package():
    """`import datasets` / `from harness...` would find HF's package (or nothing) once installed."""
    bad = []
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            bad += _bare_imports(path)
    assert bad == []


def test_namespace_resolves_to_repository_from_another_directory(tmp_path):
    code = ("import sys, vireid.datasets as d; print(d.__file__); print(d.VIREID_PACKAGE); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    path, marker, torch_loaded = out.stdout.split()
    assert Path(path).resolve() == REPO / "datasets" / "__init__.py"
    assert marker == "True"
    assert torch_loaded == "False"  # the package's __init__ stays light


@pytest.mark.slow
def test_installs_beside_huggingface_datasets(tmp_path):
    """A wheel install of the project next to HF `datasets` (from the package index): both import.

    The new venv borrows this environment's site-packages (torch etc.) through a .pth line, so
    pip only installs the project itself and whatever HF `datasets` needs beyond it.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", str(REPO)], check=True, env=env, cwd=tmp_path)
    proc = subprocess.run(pip + ["datasets"], env=env, cwd=tmp_path, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"pip install datasets (Hugging Face) failed:\n{proc.stderr[-2000:]}")
    vireid = venv / "bin" / "vireid"
    work = tmp_path / "work"
    work.mkdir()

    def run(*args):
        res = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True)
        assert res.returncode == 0, f"{args}: {res.stderr[-2000:]}"
        return res.stdout

    assert "usage: vireid" in run(str(vireid), "--help")
    run(str(vireid), "data", "synth", "--layout", "sysu", "--out", "synth", "--ids", "6",
        "--images-per-cam", "2", "--seed", "0")
    run(str(vireid), "data", "check", "--dataset", "sysu", "--root", "synth", "--out", "manifest.parquet")
    # The commands' defaults come from the params.yaml the wheel carries (a copy of the repository's).
    out = run(str(py), "-c", "from vireid.harness.config import default_params_file, load_params; "
                             "print(default_params_file()); print(load_params().data.synthetic.n_ids)")
    packaged, n_ids = out.split()
    assert Path(packaged).is_relative_to(venv) and not Path(packaged).is_symlink()
    assert int(n_ids) == yaml.safe_load((REPO / "params.yaml").read_text())["data"]["synthetic"]["n_ids"]
    out = run(str(py), "-c", "import datasets, vireid.datasets as v; print(datasets.__file__); "
                             "print(hasattr(datasets, 'load_dataset')); print(v.__file__)")
    hf_file, has_loader, ours = out.split()
    assert "site-packages" in hf_file and has_loader == "True"
    assert Path(ours).is_relative_to(venv)  # the wheel's copy, not the repository folder
