"""The study's numbers as DVC compares them: one metrics file and per-variant training curves.

`metrics/study.json` holds, per dataset x variant x protocol (re-ranked results under their
own key) x metric, the mean, sample std and n over the seeds of the evaluate stage's
`results/metrics/**/metrics.json`. `metrics/curves/<dataset>/<variant>.csv` holds per epoch the
seeds' mean training loss and validation mAP. Both are small, written with rounded values
(stable bytes) and committed to git, so `dvc metrics diff`, `dvc exp show` and
`dvc plots diff` read them at any commit or experiment.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from vireid.harness.schema import ConfigError

METRICS = ("r1", "r10", "r20", "mAP", "mINP")
DIGITS = 4


def summary_of(results: list[dict], digits: int | None = DIGITS) -> dict:
    """One run's headline numbers, {protocol[+rerank...]: {metric: value}} (the evaluate stage's
    summary, rounded to `digits`; None: unrounded, for averaging)."""
    from vireid.harness.evaluation.evaluate import rerank_suffix

    out: dict = {}
    for res in results:
        key = res["protocol"] + (f"+rerank{rerank_suffix(res['rerank'])}" if res["rerank"]["enabled"] else "")
        out[key] = {m: float(res[m]) if digits is None else round(float(res[m]), digits) for m in METRICS}
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, DIGITS), "std": round(std, DIGITS), "n": n}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a metrics JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict) or not isinstance(data.get("results"), list):
        raise ConfigError(f"{path}: expected {{'run': {{...}}, 'results': [...]}} as `vireid evaluate` writes")
    return data


def aggregate(metrics_dir: str | Path) -> dict[str, Any]:
    """{dataset: {variant: {protocol: {metric: {mean, std, n}}}}} over the seeds; on a dataset with
    several official splits (RegDB's literature protocol), each split's mean over its seeds, then
    mean, std and n over the splits, as the report's tables."""
    files = sorted(Path(metrics_dir).rglob("metrics.json"))
    if not files:
        raise ConfigError(f"{metrics_dir}: no metrics.json below it (run the evaluate stages first)")
    seeds: dict[tuple[str, str], dict[Any, dict[Any, dict[str, Any]]]] = {}
    for path in files:
        data = _read_json(path)
        run = data["run"]
        split = (run.get("params") or {}).get("data.regdb_split")
        group = seeds.setdefault((str(run.get("dataset")), str(run.get("variant"))), {}).setdefault(split, {})
        if run.get("seed") in group:
            raise ConfigError(f"{path}: a second result of {run.get('dataset')}/{run.get('variant')} seed "
                              f"{run.get('seed')}" + (f" on split {split}" if split is not None else "")
                              + ": it would count as another seed")
        group[run.get("seed")] = summary_of(data["results"], digits=None)
    out: dict[str, Any] = {}
    for (dataset, variant), splits in sorted(seeds.items(), key=lambda kv: kv[0]):
        block = out.setdefault(dataset, {}).setdefault(variant, {})
        protocols = sorted({p for runs in splits.values() for summary in runs.values() for p in summary})
        for protocol in protocols:
            block[protocol] = {}
            for m in METRICS:
                per_split = [[s[protocol][m] for s in runs.values() if protocol in s] for runs in splits.values()]
                per_split = [v for v in per_split if v]
                values = per_split[0] if len(per_split) == 1 else [sum(v) / len(v) for v in per_split]
                block[protocol][m] = _stats(values)
    return out


def curves(runs_dir: str | Path) -> dict[tuple[str, str], str]:
    """(dataset, variant) -> CSV text: epoch, mean training loss and validation mAP over the seeds
    of the study's run folders `<runs_dir>/<dataset>/<variant>/seed<n>/history.csv`."""
    rows: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = {}
    root = Path(runs_dir)
    for path in sorted(root.glob("*/*/seed*/history.csv")):
        dataset, variant = path.relative_to(root).parts[:2]
        by_epoch = rows.setdefault((dataset, variant), {})
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            entry = by_epoch.setdefault(int(row["epoch"]), {"loss": [], "val_mAP": []})
            entry["loss"].append(float(row["loss"]))
            if row.get("val/mAP"):
                entry["val_mAP"].append(float(row["val/mAP"]))
    out = {}
    for key, by_epoch in sorted(rows.items()):
        lines = ["epoch,loss,val_mAP,n"]
        for epoch, entry in sorted(by_epoch.items()):
            val = f"{sum(entry['val_mAP']) / len(entry['val_mAP']):.{DIGITS}f}" if entry["val_mAP"] else ""
            lines.append(f"{epoch},{sum(entry['loss']) / len(entry['loss']):.{DIGITS}f},{val},{len(entry['loss'])}")
        out[key] = "\n".join(lines) + "\n"
    return out


def write(metrics_dir: str | Path, out: str | Path, runs_dir: str | Path | None = None,
          curves_dir: str | Path | None = None) -> list[Path]:
    """Write the aggregate (and the curves); return the files written."""
    from vireid.harness.io import atomic_write_text

    written = [Path(out)]
    atomic_write_text(out, json.dumps(aggregate(metrics_dir), indent=2, sort_keys=True) + "\n")
    if runs_dir is not None and curves_dir is not None:
        for (dataset, variant), text in curves(runs_dir).items():
            path = Path(curves_dir) / dataset / f"{variant}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            written.append(path)
    return written
