"""`vireid protocols`: every evaluation protocol, what it ranks and the public code it follows."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from vireid.harness.commands.common import add_command

    p = add_command(subparsers, "protocols", "list the evaluation protocols and the code each follows",
                    "Every named evaluation protocol: what it ranks (query and gallery cameras), its trials, CMC "
                    "rule and distance, and the public evaluation code it reproduces. Same as `vireid list "
                    "protocols`.", ["vireid protocols"])
    p.set_defaults(handler=run)


def protocol_table() -> str:
    from vireid.harness.evaluation.protocols import PROTOCOLS

    header = ["protocol", "dataset", "query", "gallery", "trials", "cmc", "distance", "follows"]
    rows = []
    for p in PROTOCOLS.values():
        query = f"cams {','.join(map(str, p.query_cams))}" + (" (1 per id/cam)" if p.deen_draw == "query" else "")
        gallery = f"cams {','.join(map(str, p.gallery_cams))}" + (" (1 per id/cam)" if p.deen_draw == "gallery" else "")
        if p.needs_perm:
            gallery += f" ({p.num_shots} per id/cam)"
        rows.append([p.name, p.dataset, query, gallery, str(p.num_trials), p.cmc, p.distance, p.follows])
    from vireid.harness.commands.common import text_table

    return text_table(header, rows)


def run(args: argparse.Namespace) -> int:
    print(protocol_table(), end="")
    return 0
