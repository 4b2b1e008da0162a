"""What each `dvc.yaml` stage runs and reads, derived from the code (for the dependency tests).

`import_closure` follows every `import` statement of the project's modules, including the
ones inside functions (the harness imports lazily), so it is a superset of what any run of
the command can import. `dvc_stages` are the stages as DVC itself resolves dvc.yaml.
"""
from __future__ import annotations

import ast
import contextlib
import functools
from pathlib import Path

from study_support import REPO

PACKAGES = {"vireid.harness": "harness", "vireid.datasets": "datasets", "vireid.methods": "methods",
            "vireid.common": "common"}
CLI_MODULES = ("vireid.harness.__main__", "vireid.harness.cli", "vireid.harness.runtime")


def module_file(name: str) -> Path | None:
    """The repository file of module `name` (`vireid.harness.x` -> harness/x.py), or None."""
    for prefix, folder in PACKAGES.items():
        if name == prefix or name.startswith(prefix + "."):
            rel = Path(folder, *name[len(prefix) + 1:].split(".")) if name != prefix else Path(folder)
            for candidate in (REPO / rel.with_suffix(".py"), REPO / rel / "__init__.py"):
                if candidate.is_file():
                    return candidate
    return None


def _imported_names(path: Path, module: str, functions: tuple[str, ...] | None = None) -> set[str]:
    """Modules named by the import statements of `path`: all of them, or (`functions` given) the
    module-level ones plus those inside the named top-level functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if functions is None:
        nodes = list(ast.walk(tree))
    else:
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.ClassDef))
                 for n in ast.walk(top)]
        nodes += [n for top in tree.body if isinstance(top, ast.FunctionDef) and top.name in functions
                  for n in ast.walk(top)]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


@functools.lru_cache(maxsize=None)
def import_closure(*modules: str, entry: tuple[str, tuple[str, ...]] | None = None) -> set[Path]:
    """Files of every project module that `modules` can import, with their parent packages;
    `entry` = (module, functions): that module, but only what those functions import besides
    its module-level imports (a command module serves several stages: `data prepare`, `data audit`)."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = list(modules)
    if entry is not None:
        name, functions = entry
        path = module_file(name)
        files.add(path)
        seen.add(name)
        todo += sorted(_imported_names(path, name, functions)) + [name.rpartition(".")[0]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
        todo += sorted(_imported_names(path, name))
    return files


def dvc_stages() -> list:
    """Every stage of dvc.yaml as DVC resolves it (matrix items expanded, `${...}` filled in)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return list(repo.index.stages)


def stage_commands(stage) -> list:
    """The parsed `vireid ...` command lines of a resolved stage (`a && b` is two)."""
    from vireid.harness.cli import build_parser

    commands = []
    for text in stage.cmd.split("&&"):
        words = text.split()
        assert words[0] == "vireid", f"{stage.addressing}: command does not start with vireid: {text}"
        commands.append(build_parser().parse_args(words[1:]))
    return commands


def stage_deps(stage) -> list[str]:
    return [dep.def_path for dep in stage.deps]


def copy_with_fake_outputs(dest: Path) -> None:
    """The repository's tracked files in `dest` as a new git + DVC repository whose dvc.lock
    records the current deps (every output a placeholder): `dvc status` there is clean, and
    then lists exactly the stages an edit reaches."""
    import subprocess

    from dvc.repo import Repo

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if rel != "dvc.lock" and (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((REPO / rel).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    Repo.init(str(dest), force=True)
    with contextlib.chdir(dest), Repo(str(dest)) as repo:  # DVC resolves stage paths from the cwd
        for stage in repo.index.stages:
            for out in stage.outs:
                path = dest / out.def_path
                target = path if path.suffix else path / "placeholder"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(stage.addressing)
        repo.commit(None, force=True)


def stage_code(stage) -> set[Path]:
    """The project files a stage's command can import: the CLI, the command module's
    module-level imports, its `register` and the handler the command line dispatches to."""
    files: set[Path] = set()
    for args in stage_commands(stage):
        handler = args.handler
        files |= import_closure(*CLI_MODULES, entry=(handler.__module__, ("register", handler.__name__)))
    return files


def uncovered(files: set[Path], deps: list[str]) -> list[str]:
    """Repository-relative `files` that no dependency path (a file or a folder) covers."""
    roots = [REPO / dep for dep in deps]
    return sorted(f.relative_to(REPO).as_posix() for f in files
                  if not any(f == root or root in f.parents for root in roots))
