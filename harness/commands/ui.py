"""`vireid mlflow-ui` and `vireid optuna-dashboard`: local viewers bound to 127.0.0.1."""
from __future__ import annotations

import argparse
import os
import shutil
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mlflow-ui", help="browse runs in the MLflow UI (http://127.0.0.1:5000)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(handler=mlflow_ui)
    p = subparsers.add_parser("optuna-dashboard", help="browse a study (needs the optuna-dashboard package)")
    p.add_argument("--storage", default=None, help="storage URL (default: tune.storage from params.yaml)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(handler=optuna_dashboard)


def mlflow_ui(args: argparse.Namespace) -> int:
    from vireid.harness.tracking import DEFAULT_ARTIFACTS, resolve_uri

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", resolve_uri(None),
           "--default-artifact-root", DEFAULT_ARTIFACTS, "--host", args.host, "--port", str(args.port)]
    print("starting:", " ".join(cmd))
    os.execv(sys.executable, cmd)
    return 0


def optuna_dashboard(args: argparse.Namespace) -> int:
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        from vireid.harness.cli import UserError

        raise UserError("optuna-dashboard is not installed: `.venv/bin/pip install optuna-dashboard`")
    storage = args.storage
    if storage is None:
        from vireid.harness.config import load_params

        storage = load_params().tune.storage
    os.execv(exe, [exe, storage, "--host", args.host, "--port", str(args.port)])
    return 0
