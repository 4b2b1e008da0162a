"""The `vireid` command line: a thin dispatcher over `vireid.harness.commands.*` modules."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

# Command modules, in the order their commands appear in `vireid --help`.
COMMAND_MODULES = (
    "vireid.harness.commands.data",
    "vireid.harness.commands.train",
    "vireid.harness.commands.evaluate",
    "vireid.harness.commands.evaluate_study",
    "vireid.harness.commands.import_checkpoint",
    "vireid.harness.commands.export_backbone",
    "vireid.harness.commands.eval_features",
    "vireid.harness.commands.protocols",
    "vireid.harness.commands.listing",
    "vireid.harness.commands.describe_model",
    "vireid.harness.commands.tune",
    "vireid.harness.commands.report",
    "vireid.harness.commands.scaleout",
    "vireid.harness.commands.study_metrics",
    "vireid.harness.commands.ui",
)


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback, exit code 2."""


def version() -> str:
    """The installed distribution's version; pyproject.toml's in a source tree that is not installed."""
    from importlib import metadata

    try:
        return metadata.version("vireid-bench")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`, DVC stopping a stage), unwound like Ctrl-C so that the
    MLflow run is closed as KILLED and the outputs written so far stay complete."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid",
        description="Visible-infrared person re-identification harness (IDKL and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import a module (name or .py path) that registers datasets or methods before the "
                             "command runs (repeatable; added to $VIREID_PLUGINS for subprocesses)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def is_user_error(exc: BaseException) -> bool:
    """The harness's own error types (any class defined in a `vireid.*` module: ConfigError,
    DatasetError, CheckpointError, ...) and OS errors (missing file, permission, full disk).

    Everything else (a torch RuntimeError from a shape mismatch, a KeyError in our code) is a
    bug and keeps its traceback; library errors that users can cause are converted to
    harness errors, naming the file, where they are raised.
    """
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.startswith("vireid.") for cls in type(exc).__mro__)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


def _plugin_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin X`` / ``--plugin=X`` anywhere on the command line, and the other arguments."""
    plugins, rest, args = [], [], iter(argv)
    for arg in args:
        if arg == "--plugin":
            value = next(args, None)
            if value is None or value.startswith("-"):  # argparse names the missing value
                rest.append(arg)
                rest += [] if value is None else [value]
            else:
                plugins.append(value)
        elif arg.startswith("--plugin="):
            plugins.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return plugins, rest


def main(argv: list[str] | None = None) -> int:
    from vireid.harness.logs import configure_logging
    from vireid.harness.runtime import configure_environment

    configure_environment()  # before any command imports numpy or torch
    configure_logging()
    plugins, argv = _plugin_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if plugins:  # before the parser, whose choices list the registered datasets
            from vireid.common.registry import add_plugins

            add_plugins(plugins)
    except Exception as exc:
        if not is_user_error(exc) or "--debug" in argv:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result = args.handler(args)
    except KeyboardInterrupt as exc:
        # Checkpoints and outputs are written atomically: what exists is complete, and
        # `vireid train --resume` continues from the last checkpoint.
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        print(f"{what}; outputs written so far are complete; resume a run with --resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # the reader of stdout went away (`vireid list runs | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141  # 128 + SIGPIPE, as a shell reports it
    # OSError covers missing files, permissions and a full disk (ENOSPC names the file);
    # atomic writes guarantee that what was written before is intact in every case.
    except Exception as exc:
        if getattr(args, "debug", False) or not is_user_error(exc):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    return int(result or 0)
