"""MLflow tracking: where runs go, and a reachability check before any training starts.

Default store: `sqlite:///<repo>/mlflow.db` with artifacts under `<repo>/mlartifacts`
(both ignored by git). `MLFLOW_TRACKING_URI` or `tracking.uri` override it. A remote
server that does not answer is reported before the first training step, not after an
hour of training.

Conventions (README "Tracking"): a run is named `<variant>-<dataset>-seed<N>`, carries the
experiment's description as its note, the commit in `mlflow.source.git.commit`, the dataset as
an MLflow input (name + content fingerprint) and its run folder in `vireid.run_dir`. A newer run
of the same folder marks the older ones `vireid.superseded=true`. Tuning trials carry Optuna's
trial state in the `state` tag (optuna-integration's MLflowCallback convention): a pruned trial
is FINISHED with `state=PRUNED`, not FAILED.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from vireid.harness.config import REPO_ROOT

DEFAULT_URI = f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
DEFAULT_ARTIFACTS = (REPO_ROOT / "mlartifacts").as_uri()

# MLflow 3's UI opens an experiment without this tag on its GenAI overview, not on the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
RUN_DIR_TAG = "vireid.run_dir"
SUPERSEDED_TAG = "vireid.superseded"
TRIAL_TAG = "optuna_trial"
STATE_TAG = "state"  # Optuna's trial state name, as optuna-integration's MLflowCallback logs it


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be reached or written."""


@contextlib.contextmanager
def closed_as_killed(enabled: bool):
    """Inside an active MLflow run: Ctrl-C or SIGTERM (cli.Terminated) ends it as KILLED, not
    FAILED or forever RUNNING."""
    try:
        yield
    except KeyboardInterrupt:
        if enabled:
            import mlflow

            mlflow.end_run("KILLED")
        raise


def resolve_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def connect(uri: str | None, experiment: str) -> str:
    """Point MLflow at `uri`, check that it answers, make sure `experiment` exists.

    Returns the experiment id. Raises TrackingError with the URI and the cause.
    """
    uri = resolve_uri(uri)
    if uri.startswith("http"):
        # Fail fast instead of MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = DEFAULT_ARTIFACTS if uri == DEFAULT_URI else None
            experiment_id = client.create_experiment(experiment, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
        if found is None or found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
        return experiment_id
    except Exception as exc:  # connection refused, DNS, permission, disk full
        raise TrackingError(
            f"MLflow tracking store {uri!r} is not reachable or not writable ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else exc}). Start the server, fix MLFLOW_TRACKING_URI, "
            "or set tracking.enabled=false."
        ) from None


def _is_store_error(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in ("mlflow", "sqlalchemy", "sqlite3") for cls in type(exc).__mro__)


@contextlib.contextmanager
def store_errors(uri: str | None):
    """Turn an MLflow store failure mid-run (its disk full, the database locked or corrupt)
    into a TrackingError naming the store; other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        if not _is_store_error(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TrackingError(f"MLflow tracking store {resolve_uri(uri)!r} failed while logging "
                            f"({type(exc).__name__}: {first[:300]}); outputs written so far are complete; "
                            "free the store's disk or set tracking.enabled=false, then resume with --resume"
                            ) from None


def run_name(params: Any) -> str:
    """`<variant>-<dataset>-seed<N>`: unique per cell of the study's matrix."""
    return f"{params.experiment.name}-{params.data.name}-seed{params.train.seed}"


def folder_label(path: str | Path) -> str:
    """A folder as the repository-relative POSIX path when inside it (the same on every clone)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def run_tags(params: Any, extra: dict[str, str] | None = None, run_dir: str | Path | None = None) -> dict[str, str]:
    tags = {
        "mlflow.source.git.commit": git_commit(),
        "method": params.model.method,
        "variant": params.experiment.name,
        "dataset": params.data.name,
        "protocols": ",".join(params.protocols()),
    }
    if run_dir is not None:
        tags[RUN_DIR_TAG] = folder_label(run_dir)
    stage = os.environ.get("DVC_STAGE")
    if stage:
        tags["dvc_stage"] = stage
    if extra:
        tags.update(extra)
    return tags


def _system_metrics_available() -> bool:
    """MLflow samples system metrics with psutil; without it, training runs without them."""
    import importlib.util

    return importlib.util.find_spec("psutil") is not None


def supersede(client: Any, experiment_id: str, run_dir: str, keep: str) -> int:
    """Tag every other current run of `run_dir` superseded; returns how many were tagged."""
    flagged, token = 0, None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{SUPERSEDED_TAG}` = 'false'", max_results=1000,
                                  page_token=token)
        for run in page:
            if run.info.run_id != keep and run.data.tags.get(RUN_DIR_TAG) == run_dir:
                client.set_tag(run.info.run_id, SUPERSEDED_TAG, "true")
                flagged += 1
        token = page.token
        if not token:
            return flagged


def _is_pruned(exc: BaseException) -> bool:
    return any(cls.__name__ == "TrialPruned" and cls.__module__.startswith("optuna") for cls in type(exc).__mro__)


@contextlib.contextmanager
def training_run(experiment_id: str, params: Any, name: str, tags: dict[str, str]):
    """An MLflow run for one training run, closed with the state that tells what happened.

    Success: FINISHED. A pruned Optuna trial: FINISHED with `state=PRUNED` (so the UI does not list
    it as failed). Ctrl-C: KILLED. Any other error: FAILED. Trial runs also get `state`
    COMPLETE / FAIL. Older runs of the same run folder are marked superseded once this one starts.
    """
    import mlflow

    system_metrics = params.tracking.system_metrics and _system_metrics_available()
    tags = {**tags, SUPERSEDED_TAG: "false"}
    active = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags,
                              description=params.experiment.description or None,
                              log_system_metrics=system_metrics)
    trial = TRIAL_TAG in tags
    try:
        if RUN_DIR_TAG in tags:
            supersede(mlflow.tracking.MlflowClient(), experiment_id, tags[RUN_DIR_TAG], active.info.run_id)
        yield active
    except BaseException as exc:
        pruned = _is_pruned(exc)
        if trial:
            mlflow.set_tag(STATE_TAG, "PRUNED" if pruned else "FAIL")
        killed = isinstance(exc, (KeyboardInterrupt, SystemExit))
        mlflow.end_run("FINISHED" if pruned else "KILLED" if killed else "FAILED")
        raise
    if trial:
        mlflow.set_tag(STATE_TAG, "COMPLETE")
    mlflow.end_run("FINISHED")


def log_dataset(name: str, prepared_dir: str | Path, fingerprint: str) -> None:
    """The prepared dataset as the run's MLflow input: its name, folder and content fingerprint."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local source
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder_label(prepared_dir))
    # MLflow caps a dataset digest at 36 characters; the full fingerprint goes in a tag.
    mlflow.log_input(MetaDataset(source, name=name, digest=fingerprint[:36]), context="training")
    mlflow.set_tag("vireid.dataset_fingerprint", fingerprint)


def log_params_flat(flat: dict[str, Any]) -> None:
    """Log every resolved parameter (MLflow caps values at 6000 chars, batches at 100)."""
    import mlflow

    items = [(k, str(v)[:6000]) for k, v in sorted(flat.items())]
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start:start + 100]))


def log_result_metrics(results: list[dict[str, Any]], step: int | None = None, prefix: str = "test") -> None:
    import mlflow

    from vireid.harness.evaluation.evaluate import rerank_suffix

    metrics = {}
    for res in results:
        tag = res["protocol"].replace("/", "_") + (f"_rr{rerank_suffix(res['rerank'])}" if res["rerank"]["enabled"]
                                                   else "")
        for key in ("r1", "r5", "r10", "r20", "mAP", "mINP"):
            metrics[f"{prefix}.{tag}.{key}"] = float(res[key])
    if metrics:
        mlflow.log_metrics(metrics, step=step)


def artifact_dir_exists(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())
