"""`vireid mlflow-ui` and `vireid optuna-dashboard`: local viewers bound to 127.0.0.1."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from vireid.harness.commands.common import add_command

DASHBOARD_EXTRA = "pip install 'vireid-bench[dashboard]'"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "mlflow-ui", "browse runs in the MLflow UI (http://127.0.0.1:5000)",
                    "Start the MLflow UI on the project's tracking store (tracking.uri, $MLFLOW_TRACKING_URI or "
                    "sqlite:///<repo>/mlflow.db); the experiment opens on its runs table.",
                    ["vireid mlflow-ui", "vireid mlflow-ui --port 5001"])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(handler=mlflow_ui)
    p = add_command(subparsers, "optuna-dashboard", "browse a study in optuna-dashboard (the `dashboard` extra)",
                    "Serve optuna-dashboard on the study storage (an SQLite/PostgreSQL URL or a journal file). "
                    f"Needs the optional extra: {DASHBOARD_EXTRA}.",
                    ["vireid optuna-dashboard", "vireid optuna-dashboard --storage tune/journal.log --port 8081"])
    p.add_argument("--storage", default=None, help="storage URL or journal file (default: tune.storage of params.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=optuna_dashboard)


def mlflow_ui(args: argparse.Namespace) -> int:
    from vireid.harness.tracking import DEFAULT_ARTIFACTS, resolve_uri

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", resolve_uri(None),
           "--default-artifact-root", DEFAULT_ARTIFACTS, "--host", args.host, "--port", str(args.port)]
    print("starting:", " ".join(cmd))
    os.execv(sys.executable, cmd)
    return 0


def optuna_dashboard(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("optuna_dashboard") is None:
        from vireid.harness.cli import UserError

        raise UserError(f"optuna-dashboard is not installed; it is the optional `dashboard` extra: {DASHBOARD_EXTRA}")
    from optuna_dashboard import run_server

    from vireid.harness.tuning import make_storage

    storage = args.storage
    if storage is None:
        from vireid.harness.config import load_params

        storage = load_params().tune.storage
    print(f"optuna-dashboard on http://{args.host}:{args.port} ({storage})")
    run_server(make_storage(storage), host=args.host, port=args.port)
    return 0
