"""The dataset audit's reference points in the report: what a trained model is measured against.

Reads the ``audit.json`` files that `vireid data audit` writes (one per dataset) and builds two
tables per dataset: cross-modal R1 / mAP of chance, the pixel and gradient matchers and the
closed-form linear matcher; and, for synthetic data, the cue-shuffle table.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vireid.harness.report import ReportError
from vireid.harness.report.tables import Cell, Table

MATCHER_LABELS = {"chance": "Chance (random features)", "pixels": "Nearest neighbour, grey pixels",
                  "gradient": "Nearest neighbour, gradient magnitude",
                  "linear": "Linear cross-modal map (ridge, training ids)",
                  "pretrained": "The runs' starting backbone, no fine-tuning (model.weights)"}
# The matchers a trained model's R1 is compared with ("x the best pixel matcher"): no learned features.
PIXEL_MATCHERS = ("pixels", "gradient", "linear")
GROUP_LABELS = {"none": "none (re-rendered as written)", "shared": "shared (shape, pattern, bag)",
                "visible": "visible-only (colours)", "infrared": "infrared-only (NIR dyes / heat)"}


def load_audits(paths: list[str | Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        path = Path(path)
        try:
            audit = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: unreadable dataset audit ({exc}); run `vireid data audit`") from None
        if not isinstance(audit, dict) or not isinstance(audit.get("cross_modal"), dict):
            raise ReportError(f"{path}: not a dataset audit (no 'cross_modal' block); run `vireid data audit`")
        audit["_path"] = str(path)
        out.append(audit)
    return out


def best_matcher(audit: dict[str, Any], protocol: str, metric: str = "r1") -> tuple[str, float] | None:
    """The strongest pixel matcher (PIXEL_MATCHERS: nothing learned by SGD) on ``protocol``."""
    rows = audit["cross_modal"].get(protocol)
    names = [k for k in PIXEL_MATCHERS if k in (rows or {})]
    if not names:
        return None
    name = max(names, key=lambda k: rows[k][metric])
    return name, float(rows[name][metric])


def reference_tables(audit: dict[str, Any]) -> list[Table]:
    name = audit.get("dataset", "dataset")
    fp = str(audit.get("fingerprint", ""))[:12]
    stamp = [f"dataset fingerprint {fp}; {audit.get('test_identities')} test identities, "
             f"{audit.get('queries')} infrared queries; matcher images {audit['match_size'][0]} x "
             f"{audit['match_size'][1]}; from `{audit['_path']}`"]
    protocols = list(audit["cross_modal"])
    rows = []
    for matcher in [m for m in MATCHER_LABELS if any(m in audit["cross_modal"][p] for p in protocols)]:
        row = [Cell(MATCHER_LABELS[matcher])]
        for p in protocols:
            m = audit["cross_modal"][p].get(matcher, {})
            row += [Cell(f"{m.get('r1', float('nan')):.1f}"), Cell(f"{m.get('mAP', float('nan')):.1f}")]
        rows.append(row)
    tables = [Table(key=f"reference_{name}", title=f"Reference points: {name} test split (no SGD training)",
                    columns=["Matcher"] + [c for _ in protocols for c in ("R1", "mAP")], rows=rows,
                    groups=[("", 1)] + [(p, 2) for p in protocols], stamp=stamp,
                    align=["l"] + ["r"] * (2 * len(protocols)))]
    shuffle = audit.get("cue_shuffle")
    if shuffle:
        rows = [[Cell(GROUP_LABELS.get(g, g))] + [Cell(f"{m[k][x]:.1f}") for k in ("gradient", "linear")
                                                   for x in ("r1", "mAP")]
                for g, m in shuffle["results"].items()]
        tables.append(Table(key=f"cue_shuffle_{name}",
                            title=f"Cue shuffle: infrared queries re-rendered with one cue group of another identity "
                                  f"({shuffle['protocol']})",
                            columns=["Shuffled group", "R1", "mAP", "R1", "mAP"], rows=rows,
                            groups=[("", 1), ("gradient matcher", 2), ("linear matcher", 2)], stamp=stamp,
                            align=["l", "r", "r", "r", "r"]))
    return tables
