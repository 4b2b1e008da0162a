"""Arguments shared by the commands that resolve `params.yaml`."""
from __future__ import annotations

import argparse


def add_params_args(parser: argparse.ArgumentParser, experiment: bool = True, data: bool = True) -> None:
    parser.add_argument("--params", default=None, help="parameter file (default: params.yaml in the repository)")
    if experiment:
        parser.add_argument("--experiment", "-e", default=None,
                            help="experiment overlay: a name in experiments/ or a YAML path")
    if data:
        parser.add_argument("--data", "-d", default=None, metavar="NAME",
                            help="dataset overlay from experiments/data/ (e.g. synth-sysu, sysu, regdb, llcm)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one parameter (repeatable), e.g. --set train.lr=1e-3")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def resolve(args: argparse.Namespace, extra: list[str] | None = None):
    from vireid.harness.config import load_params

    return load_params(args.params, getattr(args, "experiment", None), list(extra or []) + list(args.overrides),
                       dataset=getattr(args, "data", None))


def bounded_int(low: int, high: int):
    """An argparse type: an int in low..high, so a thread count of 10**20 is named, not crashed on."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high}, got {text[:40]}")
        return value

    parse.__name__ = "integer"
    return parse


def add_command(subparsers: argparse._SubParsersAction, name: str, summary: str, description: str,
                examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose `--help` has a description and worked examples (kept as written)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return subparsers.add_parser(name, help=summary, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns with a dashed rule under the header (`vireid protocols`, `vireid list`)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines) + "\n"
