"""The `vireid` command line: a thin dispatcher over `vireid.harness.commands.*` modules."""
from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order their commands appear in `vireid --help`.
COMMAND_MODULES = (
    "vireid.harness.commands.data",
    "vireid.harness.commands.train",
    "vireid.harness.commands.evaluate",
    "vireid.harness.commands.import_checkpoint",
    "vireid.harness.commands.eval_features",
    "vireid.harness.commands.protocols",
    "vireid.harness.commands.describe_model",
    "vireid.harness.commands.tune",
    "vireid.harness.commands.report",
    "vireid.harness.commands.ui",
)


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid",
        description="Visible-infrared person re-identification harness (IDKL and baselines).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vireid.harness.runtime import configure_environment

    configure_environment()  # before any command imports numpy or torch
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    # OSError covers missing files, permissions and a full disk (ENOSPC names the file);
    # atomic writes guarantee that what was written before is intact in every case.
    except (UserError, ValueError, OSError, RuntimeError, FloatingPointError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)
