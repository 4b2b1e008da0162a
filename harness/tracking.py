"""MLflow tracking: where runs go, and a reachability check before any training starts.

Default store: `sqlite:///<repo>/mlflow.db` with artifacts under `<repo>/mlartifacts`
(both ignored by git). `MLFLOW_TRACKING_URI` or `tracking.uri` override it. A remote
server that does not answer is reported before the first training step, not after an
hour of training.
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
        if found is not None:
            return found.experiment_id
        artifacts = DEFAULT_ARTIFACTS if uri == DEFAULT_URI else None
        return client.create_experiment(experiment, artifact_location=artifacts)
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


def run_tags(params: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    tags = {
        "git_commit": git_commit(),
        "method": params.model.method,
        "variant": params.experiment.name,
        "dataset": params.data.name,
        "protocols": ",".join(params.protocols()),
    }
    stage = os.environ.get("DVC_STAGE")
    if stage:
        tags["dvc_stage"] = stage
    if extra:
        tags.update(extra)
    return tags


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
