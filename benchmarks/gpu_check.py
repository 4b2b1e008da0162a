"""One GPU call, one JSON file: probe, install only what is missing, CUDA tests, training and
evaluation benchmarks, each section bounded in time so the whole fits ``--budget-s``.

Sections, in order (each records status ok / failed / timeout / skipped, its wall time,
its time limit and the tail of its output):

1. probe: Python, torch, CUDA, the GPU, NCCL, and which of the project's imports exist
   (run in a subprocess: a broken torch is reported, not raised). Without torch nothing
   else runs; without CUDA (and not ``--smoke``) neither, since nothing would be measured.
2. install: nothing when ``vireid.harness`` already imports from this tree; else
   ``pip install --no-deps --no-build-isolation --no-index --target`` of this tree into a
   scratch folder put on PYTHONPATH (the environment itself is not touched); else, when
   pip cannot build it, a folder of links (``vireid/harness -> harness`` ...).
3. tests: ``pytest -m gpu`` on the test files that hold gpu-marked tests (junit XML parsed).
4. train: ``benchmarks/bench_train.py`` at the paper's settings (ResNet-50, 384 x 144,
   P 12 x K 10), every configuration; its JSON is rewritten per configuration, so a
   timeout keeps what was measured.
5. eval: ``benchmarks/bench_eval.py --device cuda`` at SYSU-MM01, RegDB and LLCM sizes.

The output JSON is rewritten after every section. ``--smoke`` runs the same sections at
tiny sizes on whatever device there is (the CPU here), to show the script works.

    benchmarks/gpu_check.sh OUT.json              # on the GPU machine (about 8 minutes)
    benchmarks/gpu_check.sh OUT.json --smoke      # anywhere, a minute or two

Only the standard library is imported here: the probe decides what the rest may use.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"vireid.harness": "harness", "vireid.methods": "methods", "vireid.datasets": "datasets"}
# Imports the tests and benchmarks need besides torch (import name -> distribution).
NEEDED = {"numpy": "numpy", "pandas": "pandas", "torchvision": "torchvision", "PIL": "pillow", "yaml": "pyyaml",
          "pytest": "pytest"}
# Seconds per section for a full run (8 minutes in all); time a section leaves unused
# passes to the next. A smoke run gets more (a shared CPU) but much less work.
CAPS = {"full": {"probe": 45, "install": 60, "tests": 110, "train": 170, "eval": 85},
        "smoke": {"probe": 60, "install": 120, "tests": 120, "train": 240, "eval": 120}}
TAIL = 4000

PROBE = r"""
import importlib.util, json, platform, sys
out = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
       "modules": {m: importlib.util.find_spec(m) is not None for m in MODULES}}
try:
    import torch
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
else:
    out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               cudnn=torch.backends.cudnn.version())
    import torch.distributed as tdist
    out["nccl_available"] = bool(tdist.is_available() and tdist.is_nccl_available())
    if out["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        out.update(device_count=torch.cuda.device_count(), gpu=p.name,
                   capability=list(torch.cuda.get_device_capability(0)),
                   gpu_memory_bytes=p.total_memory, multiprocessors=p.multi_processor_count,
                   bf16_supported=torch.cuda.is_bf16_supported())
print(json.dumps(out))
"""

LOCATE = "import json, vireid.harness as h, vireid.methods as m, vireid.datasets as d; " \
         "print(json.dumps([h.__file__, m.__file__, d.__file__]))"


class Report:
    """The output JSON, rewritten (atomically) whenever a section ends."""

    def __init__(self, path: Path, mode: str, budget_s: float):
        self.path, self.started = path, time.monotonic()
        self.data = {"tool": "vireid-bench benchmarks/gpu_check.py", "mode": mode, "budget_s": budget_s,
                     "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "repo_commit": git_commit(), "complete": False, "probe": None, "sections": {}}

    def save(self) -> None:
        self.data["wall_s"] = round(time.monotonic() - self.started, 2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(cmd: list[str], timeout: float, env: dict, log: Path) -> dict:
    """Run ``cmd`` in its own process group under ``timeout`` seconds; the whole group is
    killed on timeout (DataLoader workers, compile workers). Output goes to ``log``."""
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, status = proc.wait(), "timeout"
    text = log.read_text(errors="replace")
    return {"status": status, "rc": rc, "seconds": round(time.monotonic() - start, 2), "timeout_s": round(timeout, 1),
            "command": " ".join(cmd), "output_tail": text[-TAIL:]}


def junit_summary(path: Path) -> dict | None:
    """Counts and per-test outcome (with the skip or failure message) from pytest's XML."""
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return {"error": f"unreadable junit XML: {exc}"}
    tests, counts = [], {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or node.text or "")[:1000]
                break
        counts[outcome] += 1
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    return {"counts": counts, "tests": tests}


def gpu_test_files() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text(errors="replace"))


def install(python: str, env: dict, work: Path, timeout: float) -> tuple[dict, dict]:
    """(section record, environment for the later sections)."""
    log = work / "install.log"
    started = time.monotonic()
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)

    def located(e: dict) -> list[str] | None:
        try:
            out = subprocess.run([python, "-c", LOCATE], cwd=work, env=e, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return None
        return json.loads(out.stdout) if out.returncode == 0 else None

    def under(files: list[str] | None, root: Path) -> bool:
        return bool(files) and all(Path(f).resolve().is_relative_to(root.resolve()) for f in files)

    record = {"status": "ok", "method": None, "timeout_s": round(timeout, 1)}
    files = located(env)
    if under(files, REPO):
        record.update(method="already importable from this tree", files=files)
    else:
        site = work / "site"
        pip = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                   "--no-cache-dir", "--target", str(site), str(REPO)],
                  max(1.0, timeout - (time.monotonic() - started)), env, log)
        trial = dict(env, PYTHONPATH=os.pathsep.join([str(site), env["PYTHONPATH"]]))
        files = located(trial) if pip["status"] == "ok" else None
        if under(files, site):
            record.update(method="pip install --no-deps --target (scratch folder on PYTHONPATH)", files=files)
            env = trial
        else:
            shim = work / "shim" / "vireid"
            shim.mkdir(parents=True, exist_ok=True)
            for name, folder in PACKAGES.items():
                link = shim / name.split(".")[1]
                if not link.exists():
                    link.symlink_to(REPO / folder, target_is_directory=True)
            trial = dict(env, PYTHONPATH=os.pathsep.join([str(shim.parent), env["PYTHONPATH"]]))
            files = located(trial)
            record.update(method="links vireid/* -> this tree (pip could not install it)", files=files,
                          pip_output_tail=pip["output_tail"])
            if under(files, REPO):
                env = trial
            else:
                record["status"] = "failed"
    record["seconds"] = round(time.monotonic() - started, 2)
    return record, env


def train_command(python: str, smoke: bool, json_out: Path, deadline: float, compile_in_smoke: bool) -> list[str]:
    cmd = [python, "-m", "benchmarks.bench_train", "--json", str(json_out), "--deadline-s", f"{deadline:.0f}"]
    if smoke:
        configs = [n for n in ("fp32-eager", "fp32-eager-seed1", "amp-bf16", "amp-fp16+scaler",
                               "amp-bf16+channels_last", "amp-bf16+channels_last (PIL workers)")]
        if compile_in_smoke:
            configs.append("amp-bf16+channels_last+compile")
        cmd += ["--device", "auto", "--backbone", "tiny", "--height", "64", "--width", "32", "--p", "4", "--k", "4",
                "--images", "96", "--num-classes", "12", "--warmup", "1", "--steps", "2", "--min-steps", "1",
                "--workers", "0", "--configs", ",".join(configs)]
    else:  # the paper's settings are bench_train's defaults
        cmd += ["--device", "cuda", "--configs", "all"]
    return cmd


def eval_command(python: str, smoke: bool, json_out: Path) -> list[str]:
    cmd = [python, "-m", "benchmarks.bench_eval", "--json", str(json_out)]
    if smoke:
        return cmd + ["--smoke", "--repeats", "1", "--device", "auto"]
    return cmd + ["--device", "cuda", "--repeats", "3", "--ref-queries", "100", "--skip-slow-llcm"]


def scaled_caps(caps: dict[str, float], budget: float) -> dict[str, float]:
    """The section caps in proportion, summing to ``budget``."""
    total = sum(caps.values())
    return {name: cap * budget / total for name, cap in caps.items()}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the JSON file to write")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device: checks that the script works")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock limit of the whole run "
                    "(default 470 s full, 660 s smoke); the section caps are scaled to it")
    ap.add_argument("--smoke-compile", action="store_true", help="with --smoke: also the torch.compile configuration")
    ap.add_argument("--python", default=sys.executable, help="the interpreter the sections run with")
    args = ap.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    budget = args.budget_s if args.budget_s is not None else float(sum(CAPS[mode].values()))
    caps = scaled_caps(CAPS[mode], budget)
    report = Report(args.out.resolve(), mode, budget)
    deadline = time.monotonic() + budget
    work = Path(tempfile.mkdtemp(prefix="vireid-gpu-check-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sections = report.data["sections"]
    names = list(caps)

    def limit(name: str) -> float:
        """What is left, less the later sections' caps: this section's cap plus whatever
        the earlier ones did not use."""
        return deadline - time.monotonic() - sum(caps[n] for n in names[names.index(name) + 1:])

    def skip_rest(reason: str, after: str) -> None:
        for n in names[names.index(after) + 1:]:
            sections.setdefault(n, {"status": "skipped", "reason": reason})

    try:
        # 1. probe
        probe_script = f"MODULES = {sorted(NEEDED)!r}\n" + PROBE
        probe = run([args.python, "-c", probe_script], limit("probe"), env, work / "probe.log")
        info = None
        if probe["status"] == "ok":
            try:
                info = json.loads(probe["output_tail"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                probe["status"] = "failed"
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            probe["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        probe["info"] = info
        report.data["probe"] = probe
        sections["probe"] = {"status": probe["status"], "seconds": probe["seconds"]}
        report.save()
        if info is None or "torch_error" in info:
            skip_rest("torch does not import (see probe)", "probe")
            return finish(report, 2)
        if not info["cuda_available"] and not args.smoke:
            skip_rest("torch sees no CUDA device: nothing to measure (use --smoke to check the script)", "probe")
            return finish(report, 3)
        missing = sorted(NEEDED[m] for m, ok in info["modules"].items() if not ok)

        # 2. install
        record, env = install(args.python, env, work, limit("install"))
        sections["install"] = record
        report.save()
        if record["status"] != "ok":
            skip_rest("the project does not import (see install)", "install")
            return finish(report, 1)
        if missing:
            skip_rest(f"missing Python packages {missing}: carry them as wheels (/work/.library/device/README.md)",
                      "install")
            return finish(report, 1)

        # 3. CUDA tests
        junit = work / "junit.xml"
        tests = run([args.python, "-m", "pytest", "-m", "gpu", "-rs", "-q", "-p", "no:cacheprovider",
                     f"--junitxml={junit}", *gpu_test_files()], limit("tests"), env, work / "tests.log")
        tests["result"] = junit_summary(junit)
        sections["tests"] = tests
        report.save()

        # 4. training throughput
        train_json = work / "train.json"
        t = limit("train")
        train = run(train_command(args.python, args.smoke, train_json, max(10.0, t - 30), args.smoke_compile), t, env,
                    work / "train.log")
        train["result"] = read_json(train_json)
        sections["train"] = train
        report.save()

        # 5. evaluation
        eval_json = work / "eval.json"
        ev = run(eval_command(args.python, args.smoke, eval_json), limit("eval"), env, work / "eval.log")
        ev["result"] = read_json(eval_json)
        sections["eval"] = ev
        report.save()
        ok = all(s.get("status") == "ok" for s in sections.values())
        return finish(report, 0 if ok else 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def finish(report: Report, rc: int) -> int:
    report.data["complete"] = rc == 0
    report.data["exit_code"] = rc
    report.save()
    summary = {n: s.get("status") for n, s in report.data["sections"].items()}
    print(f"gpu_check ({report.data['mode']}): {summary}; wrote {report.path}", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
