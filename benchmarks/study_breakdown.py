"""Where a `make study` spent its time: set-up, each stage, the training loops, the overhead.

    (time make study) > study.log 2>&1; echo "rc=$? seconds=$SECONDS" >> study.log
    python -m benchmarks.study_breakdown study.log          # in the study's folder
    python -m benchmarks.study_breakdown study.log --doc README.md   # also write its region

Reads the `vireid repro-matrix` lines of the log (`HH:MM:SS [stage] ...` while a stage runs,
`HH:MM:SS <stage>: ok in N s` at the end), the closing `rc=... seconds=N` line, and the
`run.local.json` that every training run writes (per-epoch seconds of the training loop). The
training loop of a run is the sum of its epochs' loop seconds (no validation, no start-up, no
test). A training stage's time splits into DVC's own work (before DVC prints "Running stage"
and after the command's last line), the command's data preparation where it has one (the
pretrain stage generates its population), its training loop, and the command's *fixed
overhead*: imports, MLflow, validation, the test protocols, plots. Each is given in
stage-seconds and as a share of the stage-seconds that the `study.jobs` slots had over the
pipeline's wall time (1-second resolution: the log's clock).
"""
from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

STAMP = re.compile(r"^(\d\d:\d\d:\d\d) \[([^\]]+)\] (.*)$")
PREPARED = re.compile(r"fingerprint: \S+ +\(([\d.]+) s\)")
DONE = re.compile(r"^\d\d:\d\d:\d\d (\S+): (ok|FAILED.*|skipped.*) in (\d+) s")
TOTAL = re.compile(r"^rc=(\d+) seconds=(\d+)")


def _clock(text: str) -> datetime:
    return datetime.strptime(text, "%H:%M:%S")


def read_log(path: Path) -> dict:
    first = last = None
    stages: dict[str, int] = {}
    command: dict[str, list[datetime]] = {}  # stage -> [its "Running stage" line, its command's last line]
    prepared: dict[str, float] = {}
    total = rc = None
    for line in path.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            at = _clock(m.group(1))
            first = first or at
            last = at
            stage, text = m.group(2), m.group(3)
            if text.startswith("Running stage"):
                command[stage] = [at, at]
            elif stage in command and not text.startswith(("Updating lock file", "To track", "\tgit add", "To enable",
                                                             "\tdvc config", "Use `dvc push`")):
                command[stage][1] = at
            if p := PREPARED.search(text):
                prepared[stage] = prepared.get(stage, 0.0) + float(p.group(1))
        if m := DONE.match(line):
            stages[m.group(1)] = int(m.group(3))
            last = _clock(line[:8])
        if m := TOTAL.match(line):
            rc, total = int(m.group(1)), int(m.group(2))
    if first is None or total is None:
        raise SystemExit(f"{path}: no `HH:MM:SS [stage]` lines or no closing `rc=... seconds=N` line")
    pipeline = (last - first) % timedelta(days=1)
    commands = {k: ((b - a) % timedelta(days=1)).total_seconds() for k, (a, b) in command.items()}
    return {"rc": rc, "total": total, "pipeline": int(pipeline.total_seconds()), "stages": stages,
            "commands": commands, "prepared": prepared}


def loop_seconds(folder: Path) -> float | None:
    path = folder / "run.local.json"
    if not path.is_file():
        return None
    return sum(e["epoch_seconds"] for e in json.loads(path.read_text())["epochs"])


def stage_folder(stage: str, root: Path) -> Path | None:
    """The run folder a training stage writes (`train@<variant>-<dataset>-<seed>`, `pretrain`)."""
    if stage == "pretrain":
        return root / "models" / "pretrain" / "run"
    if stage.startswith("train@"):
        matches = [p for p in (root / "runs").glob("*/*/seed*")
                   if stage == f"train@{p.parent.name}-{p.parent.parent.name}-{p.name[4:]}"]
        return matches[0] if matches else None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--root", type=Path, default=Path("."), help="the study's folder (default: .)")
    ap.add_argument("--jobs", type=int, default=None, help="stage slots (default: params study.jobs)")
    ap.add_argument("--doc", default=None, help="a Markdown file with a vireid:study-time region to write")
    args = ap.parse_args(argv)
    log = read_log(args.log)
    jobs = args.jobs
    if jobs is None:
        import yaml

        jobs = yaml.safe_load((args.root / "params.yaml").read_text())["study"]["jobs"]
    groups: dict[str, list[int]] = {}
    overhead = loops = dvc = data = 0.0
    for stage, seconds in log["stages"].items():
        groups.setdefault(stage.split("@")[0], []).append(seconds)
        folder = stage_folder(stage, args.root)
        loop = loop_seconds(folder) if folder else None
        if loop is not None:
            command = log["commands"].get(stage, seconds)
            loops += loop
            dvc += seconds - command
            data += log["prepared"].get(stage, 0.0)
            overhead += command - loop - log["prepared"].get(stage, 0.0)
    tune_loops = sum(s for s in (loop_seconds(p) for p in sorted((args.root / "tune" / "trials").glob("*")))
                     if s is not None)
    setup = log["total"] - log["pipeline"]
    lines: list[str] = []  # printed, and with --doc the README region
    lines.append(f"make study: {log['total'] // 60} min {log['total'] % 60} s (exit code {log['rc']})")
    lines.append(f"  set-up before the first stage (virtual environment, DVC init): {setup} s")
    lines.append(f"  the pipeline, {jobs} stages at a time: {log['pipeline']} s")
    for group, values in groups.items():
        spread = f", {min(values)}-{max(values)} s each" if len(values) > 1 else ""
        lines.append(f"    {group}: {len(values)} stage(s), {sum(values)} stage-seconds{spread}")
    slots = jobs * log["pipeline"]

    def share(x: float) -> str:
        return f"{x:.0f} stage-seconds ({100 * x / slots:.1f} %)"

    lines += [
        f"  the {slots} stage-seconds of {jobs} slots over the pipeline's wall time; of the training stages:",
        f"    training loops: {share(loops)} (and {tune_loops:.0f} in the tuning trials inside the tune stage)",
        f"    fixed overhead of their commands (imports, MLflow, validation, test, plots): {share(overhead)}",
        f"    DVC's own work around their commands (pipeline, hashes, cache, dvc.lock, lock waits): {share(dvc)}",
        f"    data generation inside them (the pretraining population): {share(data)}",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.doc:
        from vireid.harness.report.summary import write_readme

        write_readme(args.doc, "```\n" + text + "```\n", "study-time")
        print(f"wrote the study-time region of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
