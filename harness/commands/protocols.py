"""`vireid protocols`: every evaluation protocol, what it ranks and the public code it follows."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("protocols", help="list the evaluation protocols and the code each follows")
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
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    print(protocol_table(), end="")
    return 0
