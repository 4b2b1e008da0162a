"""Read and validate the report's inputs: run metrics, the Optuna study, published numbers.

Every error is a :class:`vireid.harness.report.ReportError` (a ``ValueError``) naming the file (or
directory, or storage) and, for a malformed file, the key path that is missing or wrong,
e.g. ``runs/a/metrics.json: missing key 'results[1].rerank.enabled'``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid.harness.evaluation.results import MetricsFile, ProtocolResult, ResultsError
from vireid.harness.report import ReportError

METRICS_FILE = "metrics.json"
# The scalar metrics the report reads from each evaluation result (all percentages).
TABLE_METRICS = ("r1", "r10", "r20", "mAP", "mINP")
OPTIONAL_METRICS = ("r5",)
METRIC_LABELS = {"r1": "R1", "r5": "R5", "r10": "R10", "r20": "R20", "mAP": "mAP", "mINP": "mINP"}
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


def _result_row(res: ProtocolResult) -> dict[str, Any]:
    """A checked result as the tables read it (re-ranking as a hashable setting)."""
    rr = res.rerank
    out = {
        "protocol": res.protocol, "direction": res.direction,
        "rerank": RerankSetting(True, rr.k1, rr.k2, rr.lam, rr.variant) if rr.enabled else RerankSetting(False),
        "distance": res.distance, "dataset_fingerprint": res.dataset_fingerprint, "cmc": list(res.cmc),
        "n_queries": res.n_queries, "n_queries_skipped": res.n_queries_skipped,
        **{metric: res.metric(metric) for metric in TABLE_METRICS + OPTIONAL_METRICS},
    }
    # the number of gallery trials and the per-metric SD over them: the spread within one run,
    # shown beside the seed spread and never used as replicates
    out["n_trials"] = len(res.trials) if res.trials else None
    out["trial_std"] = {m: v for m, v in res.std.items() if m in TABLE_METRICS + OPTIONAL_METRICS}
    out["per_trial"] = [{m: getattr(t, m) for m in TABLE_METRICS} for t in res.per_trial]  # trial-spread figure
    return out


def load_run(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Run:
    """Parse and validate one metrics.json (the results format of vireid.harness.evaluation.results)."""
    from vireid.harness.evaluation.protocols import protocol_names

    path = Path(path)
    try:
        metrics = MetricsFile.read(path, known_protocols=protocol_names())
    except ResultsError as exc:
        raise ReportError(str(exc)) from None
    run = metrics.run
    flat = flatten_params(run.params)
    split = flat.get("data.regdb_split") if flat.get("data.dataset") == "regdb" else None
    if split is not None and (isinstance(split, bool) or not isinstance(split, int)):
        raise ReportError(f"{path}: key 'run.params.data.regdb_split' should be a RegDB split number 1..10, "
                          f"got {split!r}")
    if runs_dir is not None:
        try:
            rel = path.parent.resolve().relative_to(Path(runs_dir).resolve()).as_posix()
        except ValueError:
            rel = path.parent.as_posix()
    else:
        rel = path.parent.as_posix()
    parsed = [_result_row(res) for res in metrics.results]
    for res in parsed:
        res["split"] = split  # the aggregation over RegDB splits reads it per result
    return Run(
        path=path,
        rel=rel or ".",
        variant=run.variant,
        variant_label=run.variant_label,
        ablation_order=run.ablation_order,
        method=run.method,
        dataset=run.dataset,
        dataset_label=run.dataset_label,
        seed=run.seed,
        mlflow_run_id=run.mlflow_run_id,
        git_commit=run.git_commit,
        train_seconds=run.train_seconds,
        params=flat,
        results=parsed,
        kind=run.kind,
        source_label=run.imported["label"] if run.imported else None,
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
