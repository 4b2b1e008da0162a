"""Run the stages of DVC matrices (e.g. every `train@...`) N at a time, through DVC itself.

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
    skipped: bool = False

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


def matrix_stages(groups: str | list[str], repo_root: str | Path | None = None) -> tuple[list[str], list[str]]:
    """The stages of `groups` (`train` -> every `train@...`, or `train` alone) and, in pipeline
    order, the other stages they depend on, read from DVC's own pipeline graph."""
    plan = stage_plan(groups, repo_root)
    members = sorted(name for name, _, member in plan if member)
    return members, [name for name, _, member in plan if not member]


def stage_plan(groups: str | list[str], repo_root: str | Path | None = None) -> list[tuple[str, set[str], bool]]:
    """(stage, the stages of the plan it depends on, whether it is one of `groups`) for every stage
    of `groups` (none: every stage of the pipeline) and every stage they depend on, dependencies first."""
    import networkx as nx
    from dvc.repo import Repo

    groups = [groups] if isinstance(groups, str) else list(groups)
    with Repo(str(repo_root) if repo_root else None) as repo:
        graph = repo.index.graph
        names = {stage: address(stage, repo.root_dir) for stage in graph.nodes}
        members = set() if groups else set(graph.nodes)  # no groups: the whole pipeline
        for group in groups:
            found = [s for s in graph.nodes if s.name == group or s.name.startswith(f"{group}@")]
            if not found:
                known = sorted({s.name.split("@")[0] for s in graph.nodes if getattr(s, "name", None)})
                raise ConfigError(f"{Path(repo.root_dir) / 'dvc.yaml'}: no stage {group!r} or {group}@...; "
                                  f"stages: {', '.join(known)}")
            members.update(found)
        wanted = members.union(*(nx.descendants(graph, s) for s in members))
        # DVC's edges point from a stage to the stages it depends on: reversed topological order runs
        # dependencies first.
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in wanted]
        return [(names[s], {names[d] for d in nx.descendants(graph, s) if d in wanted}, s in members)
                for s in order]


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


def repro_matrix(groups: str | list[str], jobs: int | None = None, devices: list[str] | None = None,
                 repo_root: str | Path | None = None) -> list[StageRun]:
    """Run the stages of `groups` and every stage they depend on, `jobs` at a time (or one per
    entry of `devices`, as CUDA_VISIBLE_DEVICES): a stage starts once the stages it depends on have
    succeeded, so independent upstream stages (a dataset's preparation, the pretraining) overlap as
    well; among the stages ready to start, single stages go before matrix entries. A failed
    stage's dependents do not start (their StageRun says `skipped`); the others go on."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if devices:
        jobs = len(devices) if jobs is None else jobs
        if jobs != len(devices):
            raise ConfigError(f"--jobs {jobs} with --devices {','.join(devices)}: give one device per job")
    jobs = jobs or 1
    if jobs < 1:
        raise ConfigError(f"--jobs: expected a number >= 1, got {jobs}")
    plan = stage_plan(groups, repo_root)
    cwd = Path(repo_root or ".").resolve()
    slots: queue.Queue[str | None] = queue.Queue()
    for slot in devices or [None] * jobs:
        slots.put(slot)
    named = [groups] if isinstance(groups, str) else list(groups)
    log.info("%d stages (%s), %d at a time", len(plan),
             f"{', '.join(named)} and what they depend on" if named else "the whole pipeline", jobs)
    pending = {name: deps for name, deps, _ in plan}
    done: set[str] = set()
    failed: set[str] = set()
    runs: list[StageRun] = []
    # Threads are enough: each job is a DVC process; the threads only relay its output.
    with ThreadPoolExecutor(jobs) as pool:
        running: dict = {}
        while pending or running:
            for name in [n for n, deps in pending.items() if deps & failed]:
                del pending[name]
                failed.add(name)
                now = time.time()
                runs.append(StageRun(name, -1, now, now, skipped=True))
            # Single stages (a pretraining, a tuning study) before matrix entries: the many short
            # entries then fill the slots around them instead of leaving one long stage for the end.
            ready = sorted((n for n, deps in pending.items() if deps <= done), key=lambda n: "@" in n)
            for name in ready[:jobs - len(running)]:
                del pending[name]
                running[pool.submit(run_stage, name, slots, cwd)] = name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                run = future.result()
                runs.append(run)
                (done if run.returncode == 0 else failed).add(name)
    for run in runs:
        state = ("skipped (a stage it depends on failed)" if run.skipped
                 else "ok" if run.returncode == 0 else f"FAILED (exit code {run.returncode})")
        on = f" on device {run.device}" if run.device is not None else ""
        log.info("%s: %s in %.0f s%s", run.stage, state, run.seconds, on)
    return runs


class StageError(RuntimeError):
    """A DVC stage command failed (its own output, shown above, says why)."""
