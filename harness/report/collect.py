"""Read and validate the report's inputs: run metrics, the Optuna study, published numbers.

Every error is a :class:`vireid.harness.report.ReportError` (a ``ValueError``) naming the file (or
directory, or storage) and, for a malformed file, the key path that is missing or wrong,
e.g. ``runs/a/metrics.json: missing key 'results[1].rerank.enabled'``.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid.harness.report import ReportError

METRICS_FILE = "metrics.json"
RUN_KINDS = ("trained", "imported")
# The scalar metrics the report reads from each evaluation result (all percentages).
TABLE_METRICS = ("r1", "r10", "r20", "mAP", "mINP")
OPTIONAL_METRICS = ("r5",)
METRIC_LABELS = {"r1": "R1", "r5": "R5", "r10": "R10", "r20": "R20", "mAP": "mAP", "mINP": "mINP"}
# A re-ranking variant's name goes into labels and file names.
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
PUBLISHED_COLUMNS = ("method", "venue", "year", "dataset", "protocol", "r1", "r10", "r20", "mAP", "mINP",
                     "source")


# --------------------------------------------------------------------------------------------
# Run metrics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RerankSetting:
    """Re-ranking configuration of one result; the variant, the k's and lambda only matter
    when enabled. Results of different variants are different settings (never averaged
    together); the standard variant keeps the labels and names it had before variants."""

    enabled: bool
    k1: Any = None
    k2: Any = None
    lam: Any = None
    variant: str = "standard"

    @property
    def label(self) -> str:
        if not self.enabled:
            return "off"
        named = "" if self.variant == "standard" else f"{self.variant}, "
        return f"on ({named}k1={self.k1}, k2={self.k2}, lambda={self.lam})"

    @property
    def slug(self) -> str:
        if not self.enabled:
            return "rr-off"
        named = "" if self.variant == "standard" else f"{self.variant}-"
        return f"rr-on-{named}k1-{self.k1}-k2-{self.k2}-lam-{self.lam}"

    def sort_key(self) -> tuple:
        return (self.enabled, self.variant != "standard", self.variant, _sortable(self.k1), _sortable(self.k2),
                _sortable(self.lam))


@dataclass
class Run:
    """One training run (one metrics.json)."""

    path: Path  # the metrics.json file
    rel: str  # its folder relative to the runs directory (POSIX), for display
    variant: str
    variant_label: str
    ablation_order: int | float | None
    method: str
    dataset: str
    dataset_label: str
    seed: Any
    mlflow_run_id: str | None
    git_commit: str | None
    train_seconds: float | None
    params: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "trained"  # or "imported": weights trained by other code (vireid import-checkpoint)
    source_label: str | None = None  # for imported runs: the code that trained them, e.g. "AGW code"
    split: int | None = None  # RegDB's official split (data.regdb_split) on RegDB runs, else None
    run_dir: Path | None = None  # the training run's folder (history.csv, features.npz), when found

    @property
    def replicate(self) -> Any:
        """What makes two runs of one variant different replicates: the seed, and on RegDB the
        split too (the literature's RegDB number is the mean over its 10 splits)."""
        return self.seed if self.split is None else f"split{self.split}/seed{self.seed}"

    @property
    def is_ablation(self) -> bool:
        return self.ablation_order is not None and self.kind == "trained"

    @property
    def kind_label(self) -> str:
        """How the report names the row's kind: ablation, comparison, or imported: <code>."""
        if self.kind == "imported":
            return f"imported: {self.source_label}"
        return "ablation" if self.is_ablation else "comparison"


def _sortable(value: Any) -> tuple:
    """A total order over None, numbers and strings (for deterministic sorting)."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0, str(value))


def find_metrics_files(runs_dir: str | os.PathLike) -> list[Path]:
    """All ``metrics.json`` files under `runs_dir` (recursively), in sorted path order."""
    root = Path(runs_dir)
    if not root.exists():
        raise ReportError(f"runs directory not found: {root}")
    if not root.is_dir():
        raise ReportError(f"runs path is not a directory: {root}")
    files = sorted((p for p in root.rglob(METRICS_FILE) if p.is_file()), key=lambda p: p.as_posix())
    if not files:
        raise ReportError(f"no {METRICS_FILE} files found under {root} (expected <runs_dir>/**/{METRICS_FILE})")
    return files


class _Checker:
    """Key-path aware accessors that raise ReportError naming the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, message: str) -> ReportError:
        return ReportError(f"{self.path}: {message}")

    def get(self, obj: dict, key: str, where: str, required: bool = True, default: Any = None) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(f"'{where}' should be a JSON object, got {type(obj).__name__}")
        full = f"{where}.{key}" if where else key
        if key not in obj:
            if required:
                raise self.fail(f"missing key '{full}'")
            return default
        return obj[key]

    def number(self, obj: dict, key: str, where: str, required: bool = True) -> float | None:
        value = self.get(obj, key, where, required=required)
        full = f"{where}.{key}" if where else key
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"key '{full}' should be a finite number, got {value!r}")
        return float(value)

    def text(self, obj: dict, key: str, where: str, required: bool = True, default: str | None = None) -> str | None:
        value = self.get(obj, key, where, required=required, default=default)
        full = f"{where}.{key}" if where else key
        if value is None:
            if required:
                raise self.fail(f"key '{full}' should be a string, got null")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.fail(f"key '{full}' should be a string, got {value!r}")
        return str(value)


def flatten_params(params: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys (already-flat mappings pass through)."""
    out: dict[str, Any] = {}
    if not isinstance(params, dict):
        return out
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, name))
        else:
            out[name] = value
    return out


def _parse_result(check: _Checker, res: Any, where: str) -> dict[str, Any]:
    if not isinstance(res, dict):
        raise check.fail(f"'{where}' should be a JSON object, got {type(res).__name__}")
    rr = check.get(res, "rerank", where)
    rr_where = f"{where}.rerank"
    enabled = check.get(rr, "enabled", rr_where)
    if not isinstance(enabled, bool):
        raise check.fail(f"key '{rr_where}.enabled' should be true or false, got {enabled!r}")
    if enabled:
        # results written before re-ranking variants existed are the standard one
        variant = check.text(rr, "variant", rr_where, required=False, default="standard")
        if not _VARIANT_NAME.fullmatch(variant):
            raise check.fail(f"key '{rr_where}.variant' should be a re-ranking variant name (lower-case letters, "
                             f"digits and '-', e.g. 'standard'), got {variant!r}")
        rerank = RerankSetting(True, check.get(rr, "k1", rr_where), check.get(rr, "k2", rr_where),
                               check.get(rr, "lambda", rr_where), variant)
    else:
        rerank = RerankSetting(False)
    cmc = check.get(res, "cmc", where)
    if not isinstance(cmc, list) or not cmc:
        raise check.fail(f"key '{where}.cmc' should be a non-empty list of percentages, got {cmc!r}")
    for i, v in enumerate(cmc):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise check.fail(f"key '{where}.cmc[{i}]' should be a finite number, got {v!r}")
    protocol = check.text(res, "protocol", where)
    if protocol not in _known_protocols():
        raise check.fail(f"key '{where}.protocol' names an unknown protocol {protocol!r}; known: "
                         + ", ".join(_known_protocols()))
    for i, v in enumerate(cmc):
        if not 0.0 <= v <= 100.0:
            raise check.fail(f"key '{where}.cmc[{i}]' should be a percentage in 0..100, got {v!r}")
    out = {
        "protocol": protocol,
        "direction": check.text(res, "direction", where, required=False, default="") or "",
        "rerank": rerank,
        "distance": check.text(res, "distance", where, required=False, default="unspecified"),
        "dataset_fingerprint": check.text(res, "dataset_fingerprint", where, required=False, default=""),
        "cmc": [float(v) for v in cmc],
        "n_queries": res.get("n_queries"),
        "n_queries_skipped": res.get("n_queries_skipped"),
    }
    for metric in TABLE_METRICS:
        out[metric] = check.number(res, metric, where)
    for metric in OPTIONAL_METRICS:
        out[metric] = check.number(res, metric, where, required=False)
    for metric in TABLE_METRICS + OPTIONAL_METRICS:
        if out[metric] is not None and not 0.0 <= out[metric] <= 100.0:
            raise check.fail(f"key '{where}.{metric}' should be a percentage in 0..100, got {out[metric]!r}")
    out["n_trials"], out["trial_std"] = _trial_spread(check, res, where)
    out["per_trial"] = _per_trial(check, res, where)
    return out


def _per_trial(check: _Checker, res: dict, where: str) -> list[dict[str, float]]:
    """Each gallery trial's metrics (optional in the file), for the trial-spread figure."""
    rows = res.get("per_trial") or []
    if not isinstance(rows, list):
        raise check.fail(f"key '{where}.per_trial' should be a list of per-trial results, got {rows!r}")
    out = []
    for i, row in enumerate(rows):
        out.append({m: check.number(row, m, f"{where}.per_trial[{i}]") for m in TABLE_METRICS
                    if isinstance(row, dict) and m in row})
    return out


def _trial_spread(check: _Checker, res: dict, where: str) -> tuple[int | None, dict[str, float]]:
    """The number of gallery trials and the per-metric SD over them (both optional in the file):
    the spread within one run, shown beside the seed spread and never used as replicates."""
    trials = res.get("trials")
    if trials is not None and not isinstance(trials, list):
        raise check.fail(f"key '{where}.trials' should be a list of trial numbers, got {trials!r}")
    std = res.get("std")
    if std is None:
        return (None if trials is None else len(trials)), {}
    if not isinstance(std, dict):
        raise check.fail(f"key '{where}.std' should be a mapping of metric to SD over trials, got {std!r}")
    spread = {}
    for metric in TABLE_METRICS + OPTIONAL_METRICS:
        if metric in std:
            value = check.number(std, metric, f"{where}.std")
            if value < 0:
                raise check.fail(f"key '{where}.std.{metric}' should be a non-negative SD, got {value!r}")
            spread[metric] = value
    return (None if trials is None else len(trials)), spread


def _known_protocols() -> list[str]:
    from vireid.harness.evaluation.protocols import protocol_names

    return protocol_names()


def load_run(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Run:
    """Parse and validate one metrics.json."""
    path = Path(path)
    check = _Checker(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise check.fail(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise check.fail("not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise check.fail(f"expected a JSON object with keys 'run' and 'results', got {type(data).__name__}")
    run = check.get(data, "run", "")
    results = check.get(data, "results", "")
    if not isinstance(results, list):
        raise check.fail(f"key 'results' should be a list, got {type(results).__name__}")
    variant = check.text(run, "variant", "run")
    order = check.get(run, "ablation_order", "run", required=False)
    if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
        raise check.fail(f"key 'run.ablation_order' should be a number or null, got {order!r}")
    dataset = check.text(run, "dataset", "run")
    seed = check.get(run, "seed", "run")
    params = check.get(run, "params", "run", required=False, default={}) or {}
    if not isinstance(params, dict):
        raise check.fail(f"key 'run.params' should be a mapping, got {type(params).__name__}")
    train_seconds = check.number(run, "train_seconds", "run", required=False)
    kind = check.text(run, "kind", "run", required=False, default="trained")
    if kind not in RUN_KINDS:
        raise check.fail(f"key 'run.kind' should be one of {', '.join(RUN_KINDS)}, got {kind!r}")
    source_label = None
    if kind == "imported":
        imported = check.get(run, "imported", "run")
        source_label = check.text(imported, "label", "run.imported")
    flat = flatten_params(params)
    split = flat.get("data.regdb_split") if flat.get("data.dataset") == "regdb" else None
    if split is not None and (isinstance(split, bool) or not isinstance(split, int)):
        raise check.fail(f"key 'run.params.data.regdb_split' should be a RegDB split number 1..10, got {split!r}")
    if runs_dir is not None:
        try:
            rel = path.parent.resolve().relative_to(Path(runs_dir).resolve()).as_posix()
        except ValueError:
            rel = path.parent.as_posix()
    else:
        rel = path.parent.as_posix()
    parsed = [_parse_result(check, res, f"results[{i}]") for i, res in enumerate(results)]
    for res in parsed:
        res["split"] = split  # the aggregation over RegDB splits reads it per result
    return Run(
        path=path,
        rel=rel or ".",
        variant=variant,
        variant_label=check.text(run, "variant_label", "run", required=False, default=variant) or variant,
        ablation_order=order,
        method=check.text(run, "method", "run", required=False, default=variant) or variant,
        dataset=dataset,
        dataset_label=check.text(run, "dataset_label", "run", required=False, default=dataset) or dataset,
        seed=seed,
        mlflow_run_id=check.text(run, "mlflow_run_id", "run", required=False),
        git_commit=check.text(run, "git_commit", "run", required=False),
        train_seconds=train_seconds,
        params=flat,
        results=parsed,
        kind=kind,
        source_label=source_label,
        split=split,
    )


RUN_FILES = ("history.csv", "features.npz")


def find_run_dir(run: Run, run_files: str | os.PathLike | None) -> Path | None:
    """The training run folder of `run`: its metrics.json's own folder when that holds the
    training files (``--runs runs``), else ``<run_files>/<rel>`` (the study's ``results/metrics``
    mirrors ``runs/``'s layout), else None."""
    for folder in (run.path.parent, None if run_files is None else Path(run_files) / run.rel):
        if folder is not None and any((folder / name).is_file() for name in RUN_FILES):
            return folder
    return None


def load_runs(runs_dir: str | os.PathLike, run_files: str | os.PathLike | None = None) -> list[Run]:
    """Every run under `runs_dir`, validated, in sorted path order, each with its training
    folder (see :func:`find_run_dir`) when one is found.

    Two results with the same (variant, dataset, replicate, protocol, direction, re-ranking,
    distance) are an error: they would silently count as two seeds.
    """
    if run_files is not None and not Path(run_files).is_dir():
        raise ReportError(f"run files folder not found: {run_files} (expected the training runs' folder, "
                          "e.g. runs)")
    runs = [load_run(p, runs_dir) for p in find_metrics_files(runs_dir)]
    for run in runs:
        run.run_dir = find_run_dir(run, run_files)
    seen: dict[tuple, Path] = {}
    for run in runs:
        for res in run.results:
            key = (run.variant, run.dataset, json.dumps(run.replicate, sort_keys=True), res["protocol"],
                   res["direction"], res["rerank"], res["distance"])
            if key in seen and seen[key] != run.path:
                raise ReportError(
                    f"duplicate result for variant {run.variant!r}, dataset {run.dataset!r}, seed {run.seed!r}"
                    + ("" if run.split is None else f" of RegDB split {run.split}") + ", "
                    f"protocol {res['protocol']!r} ({res['direction'] or 'no direction'}), re-ranking "
                    f"{res['rerank'].label}: in {seen[key]} and {run.path}; keep one run per seed")
            if key in seen:
                raise ReportError(
                    f"{run.path}: the same result (protocol {res['protocol']!r}, direction "
                    f"{res['direction']!r}, re-ranking {res['rerank'].label}) appears twice")
            seen[key] = run.path
    return runs


def variant_sort_key(order: float | None, variant: str) -> tuple:
    """Ablation rows by ablation_order first, then comparison methods by name."""
    if order is None or (isinstance(order, float) and math.isnan(order)):
        return (1, 0.0, variant)
    return (0, float(order), variant)


# --------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------
def load_published(path: str | os.PathLike | None):
    """The published-results CSV as a DataFrame of strings (empty cells stay empty), or None."""
    import pandas as pd

    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except Exception as exc:  # pandas raises several parser errors
        raise ReportError(f"{path}: cannot read the published-results CSV ({exc})") from None
    missing = [c for c in PUBLISHED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(PUBLISHED_COLUMNS)}")
    frame = frame[list(PUBLISHED_COLUMNS)].copy()
    for i, row in frame.iterrows():
        for metric in TABLE_METRICS:
            value = row[metric].strip()
            if value:
                try:
                    float(value)
                except ValueError:
                    raise ReportError(f"{path}: row {i + 2}, column {metric}: expected a number or an empty cell, "
                                      f"got {value!r}") from None
        if not row["source"].strip():
            raise ReportError(f"{path}: row {i + 2} ({row['method']}): the source column is empty; every published "
                              "number needs its source")
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Optuna study and best parameters
# --------------------------------------------------------------------------------------------
def open_storage(storage: str):
    """An Optuna storage for a database URL or a journal file (``*.log`` / ``*.jsonl``).

    Refuses a storage that does not exist yet (opening would silently create an empty one).
    """
    import optuna

    if "://" not in storage:
        path = Path(storage)
        if path.suffix not in (".log", ".jsonl"):
            raise ReportError(f"storage {storage!r}: expected a database URL (sqlite:///...) or a journal file "
                              "ending in .log or .jsonl")
        if not path.is_file():
            raise ReportError(f"journal file not found: {path}")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if storage.startswith("sqlite:///"):
        db = storage[len("sqlite:///"):]
        if db and db != ":memory:" and not Path(db).is_file():
            raise ReportError(f"Optuna database not found: {db} (from storage {storage!r})")
    try:
        return optuna.storages.RDBStorage(storage)
    except Exception as exc:
        raise ReportError(f"cannot open Optuna storage {storage!r}: {exc}") from None


def load_study(storage: str, study: str | None):
    """Load `study` from `storage`; with no study name, the storage's only study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage)
    names = sorted(optuna.get_all_study_names(backend))
    if study is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise ReportError(f"storage {storage!r} holds {len(names)} studies ({listed}); name one with --study")
        study = names[0]
    if study not in names:
        listed = ", ".join(names) if names else "none"
        raise ReportError(f"study {study!r} not found in storage {storage!r} (studies there: {listed})")
    return optuna.load_study(study_name=study, storage=backend)


def load_best_params(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The best-params YAML as a flat mapping (None when no file was given)."""
    from vireid.harness import yamlsafe
    from vireid.harness.schema import ConfigError

    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"best-params file not found: {path}")
    try:
        data = yamlsafe.load(yamlsafe.read_text(path), str(path))
    except ConfigError as exc:
        raise ReportError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a mapping of parameter names to values, got {type(data).__name__}")
    return data
