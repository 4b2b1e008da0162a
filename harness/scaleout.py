"""Run the stages of one DVC matrix (e.g. every `train@...`) N at a time, through DVC itself.

DVC 3 releases its repository lock while a stage's command runs (each stage holds read locks on
its dependencies and a write lock on its outputs), so several `dvc repro --single-item <stage>`
processes in one workspace train side by side; `--wait-for-lock` makes each wait for the short
moments another holds the repository lock (collecting the pipeline, writing dvc.lock). DVC still
decides whether a stage is up to date, removes its outputs, restores it from the run cache and
records it in dvc.lock: this module only schedules (docs/distributed.md, "The study's matrix").
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vireid.harness.schema import ConfigError

log = logging.getLogger("vireid.scaleout")


@dataclass
class StageRun:
    stage: str
    returncode: int
    started: float
    finished: float
    device: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def dvc_command(*args: str) -> list[str]:
    """DVC of this interpreter's environment (the one that installed vireid)."""
    return [sys.executable, "-m", "dvc", *args]


def child_env(device: str | None = None) -> dict[str, str]:
    """Stage commands call `vireid`: put this environment's scripts first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def matrix_stages(group: str, repo_root: str | Path | None = None) -> tuple[list[str], list[str]]:
    """The stages of `group` (`train` -> every `train@...`, or `train` alone) and, in pipeline order,
    the other stages they depend on, read from DVC's own pipeline graph."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo_root) if repo_root else None) as repo:
        graph = repo.index.graph
        names = {stage: address(stage, repo.root_dir) for stage in graph.nodes}
        members = [s for s in graph.nodes if s.name == group or s.name.startswith(f"{group}@")]
        if not members:
            groups = sorted({s.name.split("@")[0] for s in graph.nodes if getattr(s, "name", None)})
            raise ConfigError(f"{Path(repo.root_dir) / 'dvc.yaml'}: no stage {group!r} or {group}@...; "
                              f"stages: {', '.join(groups)}")
        upstream = set().union(*(nx.descendants(graph, s) for s in members)) - set(members)
        # DVC's edges point from a stage to the stages it depends on: reversed topological order runs
        # dependencies first.
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in upstream]
        return sorted(names[s] for s in members), [names[s] for s in order]


def address(stage, root: str) -> str:
    """A stage as `dvc repro` run in the repository root names it: `train@1`, `sub/dvc.yaml:x`, `data.dvc`."""
    rel = Path(os.path.relpath(stage.path, root)).as_posix()
    name = getattr(stage, "name", None)
    if not name:
        return rel
    return name if rel == "dvc.yaml" else f"{rel}:{name}"


def run_stage(stage: str, devices: "queue.Queue[str | None]", cwd: Path) -> StageRun:
    """`dvc repro --single-item <stage>` on one free device slot, its output prefixed by the stage."""
    device = devices.get()
    started = time.time()
    try:
        proc = subprocess.Popen(dvc_command("--wait-for-lock", "repro", "--single-item", stage), cwd=cwd,
                                env=child_env(device), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                log.info("[%s] %s", stage, line.rstrip())
        returncode = proc.wait()
    finally:
        devices.put(device)
    return StageRun(stage, returncode, started, time.time(), device)


def repro_matrix(group: str, jobs: int | None = None, devices: list[str] | None = None,
                 repo_root: str | Path | None = None) -> list[StageRun]:
    """Bring the stages `group` depends on up to date (`dvc repro`, one process), then run the
    group's stages `jobs` at a time (or one per entry of `devices`, as CUDA_VISIBLE_DEVICES)."""
    from joblib import Parallel, delayed

    if devices:
        jobs = len(devices) if jobs is None else jobs
        if jobs != len(devices):
            raise ConfigError(f"--jobs {jobs} with --devices {','.join(devices)}: give one device per job")
    jobs = jobs or 1
    if jobs < 1:
        raise ConfigError(f"--jobs: expected a number >= 1, got {jobs}")
    members, upstream = matrix_stages(group, repo_root)
    cwd = Path(repo_root or ".").resolve()
    if upstream:
        log.info("dvc repro %s (what %s depends on)", " ".join(upstream), group)
        proc = subprocess.run(dvc_command("repro", *upstream), cwd=cwd, env=child_env())
        if proc.returncode:
            raise StageError(f"dvc repro {' '.join(upstream)} failed with exit code {proc.returncode}")
    slots: queue.Queue[str | None] = queue.Queue()
    for slot in devices or [None] * jobs:
        slots.put(slot)
    log.info("%d stages of %s, %d at a time", len(members), group, jobs)
    # Threads are enough: each job is a DVC process; the threads only relay its output.
    runs = Parallel(n_jobs=jobs, backend="threading")(delayed(run_stage)(name, slots, cwd) for name in members)
    for run in runs:
        state = "ok" if run.returncode == 0 else f"FAILED (exit code {run.returncode})"
        on = f" on device {run.device}" if run.device is not None else ""
        log.info("%s: %s in %.0f s%s", run.stage, state, run.seconds, on)
    return runs


class StageError(RuntimeError):
    """A DVC stage command failed (its own output, shown above, says why)."""
