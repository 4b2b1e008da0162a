"""dvc.yaml's dependencies are complete: each stage depends on all the code its command can
import and every overlay it reads, so an edit anywhere a stage reaches re-runs that stage."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_support import REPO, dvc_stages, import_closure, stage_code, stage_commands, stage_deps, uncovered

STAGES = dvc_stages()
IDS = [s.addressing for s in STAGES]


@pytest.mark.parametrize("stage", STAGES, ids=IDS)
def test_every_stage_depends_on_the_code_it_imports(stage):
    missing = uncovered(stage_code(stage), stage_deps(stage))
    assert missing == [], f"{stage.addressing}: add to its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("stage", STAGES, ids=IDS)
def test_no_stage_depends_on_code_it_never_imports(stage):
    """A code dependency that the command cannot import re-runs the stage for nothing."""
    code = stage_code(stage)
    unused = [dep for dep in stage_deps(stage)
              if dep.split("/")[0] in ("harness", "datasets", "methods", "common")
              and not any(f == REPO / dep or REPO / dep in f.parents for f in code)]
    assert unused == [], f"{stage.addressing}: deps in dvc.yaml that its command never imports: {unused}"


# stages that resolve overlays (`vireid report` reads only params.yaml's report block, which `params:` covers)
WITH_PARAMS = [(s, args) for s in STAGES for args in stage_commands(s)
               if hasattr(args, "overrides") and hasattr(args, "data")]


@pytest.mark.parametrize("stage, args", WITH_PARAMS, ids=[f"{s.addressing}-{a.command}" for s, a in WITH_PARAMS])
def test_every_overlay_a_stage_reads_is_a_dependency(stage, args, monkeypatch):
    """The YAML files that resolving the stage's parameters reads (experiment and dataset
    overlays; a tuning trial's experiment) are deps, or params.yaml, which `params:` covers."""
    from vireid.harness import config

    read: list[Path] = []
    original = config.read_yaml
    monkeypatch.setattr(config, "read_yaml", lambda path: read.append(Path(path).resolve()) or original(path))
    params = config.load_params(args.params, getattr(args, "experiment", None), args.overrides, args.data)
    if args.command == "tune":
        config.load_params(args.params, params.tune.experiment, args.overrides, args.data)
    files = {p for p in read if p != (REPO / "params.yaml").resolve()}
    assert files, "recording read_yaml saw no overlay: the test no longer measures anything"
    missing = uncovered(files, stage_deps(stage))
    assert missing == [], f"{stage.addressing}: reads {missing}, not in its deps"


def test_every_training_module_is_a_dependency_of_every_train_stage():
    """The measured case: datasets/samplers.py, harness/hooks.py and harness/data.py were
    imported by training but listed by no train stage."""
    train = [s for s in STAGES if s.addressing.startswith("train@")]
    assert train
    training = import_closure("vireid.harness.runner")
    for name in ("datasets/samplers.py", "harness/hooks.py", "harness/data.py"):
        assert REPO / name in training
    for stage in train:
        assert uncovered(training, stage_deps(stage)) == [], stage.addressing


def test_evaluate_depends_on_the_runner_it_imports():
    evaluate = [s for s in STAGES if s.addressing == "evaluate"]
    assert evaluate and all(REPO / "harness/runner.py" in stage_code(s) for s in evaluate)
    code = {REPO / f"harness/{name}.py" for name in ("runner", "commands/evaluate", "commands/evaluate_study")}
    assert all(uncovered(code, stage_deps(s)) == [] for s in evaluate)


def dvc_status(folder: Path) -> dict:
    import json
    import subprocess
    import sys

    dvc = Path(sys.executable).with_name("dvc")
    out = subprocess.run([str(dvc), "status", "--json"], cwd=folder, check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "{}")


@pytest.mark.slow
def test_editing_a_module_that_training_imports_makes_dvc_status_list_the_train_stages(tmp_path):
    """The real `dvc status` on a copy of the repository, one edit (an appended comment) at a time."""
    from pipeline_support import copy_with_fake_outputs

    copy_with_fake_outputs(tmp_path)
    assert dvc_status(tmp_path) == {}
    train = {s.addressing for s in STAGES if s.addressing.startswith("train@")}
    evaluate = {"evaluate"}
    for rel, expected in (("datasets/samplers.py", train | evaluate), ("harness/hooks.py", train | evaluate),
                          ("harness/commands/evaluate.py", evaluate)):
        path = tmp_path / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        changed = set(dvc_status(tmp_path))
        assert expected <= changed, f"editing {rel} leaves {sorted(expected - changed)[:4]} up to date"
        path.write_bytes(original)
