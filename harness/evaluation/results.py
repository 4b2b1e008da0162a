"""The results format, defined once: what evaluation writes and the report, the DVC summaries
and the tests read.

A ``metrics.json`` (written by ``vireid train`` and ``vireid evaluate``) is a
:class:`MetricsFile`: ``{"run": <RunInfo>, "results": [<ProtocolResult>, ...]}``. Every
percentage is in [0, 100]. ``to_dict`` gives the JSON form (the key order of the files);
``from_dict`` reads one back and raises :class:`ResultsError` naming the file and the key path
(``runs/a/metrics.json: key 'results[1].rerank.enabled' should be true or false``). Files
written before re-ranking variants existed (no ``rerank.variant``) read as the standard one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["METRICS", "RUN_KINDS", "ResultsError", "Rerank", "TrialResult", "ProtocolResult", "RunInfo",
           "MetricsFile"]

METRICS = ("mAP", "mINP", "r1", "r5", "r10", "r20")
RUN_KINDS = ("trained", "imported")
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class ResultsError(ValueError):
    """A results file or mapping does not follow the format: the message names the key."""


class _Reader:
    """Key-path aware accessors; errors name the source (a file) and the key."""

    def __init__(self, source: str = ""):
        self.source = source

    def fail(self, message: str) -> ResultsError:
        return ResultsError(f"{self.source}: {message}" if self.source else message)

    def get(self, obj: Any, key: str, where: str, required: bool = True, default: Any = None) -> Any:
        if not isinstance(obj, Mapping):
            raise self.fail(f"'{where or '<root>'}' should be a JSON object, got {type(obj).__name__}")
        if key not in obj:
            if required:
                raise self.fail(f"missing key '{_join(where, key)}'")
            return default
        return obj[key]

    def number(self, obj: Any, key: str, where: str, required: bool = True, percent: bool = False) -> float | None:
        value = self.get(obj, key, where, required=required)
        if value is None and not required:
            return None
        return self.check_number(value, _join(where, key), percent)

    def check_number(self, value: Any, full: str, percent: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"key '{full}' should be a finite number, got {value!r}")
        if percent and not 0.0 <= value <= 100.0:
            raise self.fail(f"key '{full}' should be a percentage in 0..100, got {value!r}")
        return float(value)

    def integer(self, obj: Any, key: str, where: str, required: bool = True) -> int | None:
        value = self.get(obj, key, where, required=required)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"key '{_join(where, key)}' should be an integer, got {value!r}")
        return value

    def text(self, obj: Any, key: str, where: str, required: bool = True, default: str | None = None) -> str | None:
        value = self.get(obj, key, where, required=required, default=default)
        if value is None:
            if required:
                raise self.fail(f"key '{_join(where, key)}' should be a string, got null")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.fail(f"key '{_join(where, key)}' should be a string, got {value!r}")
        return str(value)

    def items(self, obj: Any, key: str, where: str, required: bool = True) -> list:
        value = self.get(obj, key, where, required=required, default=[])
        if not isinstance(value, list):
            raise self.fail(f"key '{_join(where, key)}' should be a list, got {type(value).__name__}")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass(frozen=True)
class Rerank:
    enabled: bool
    k1: int = 20
    k2: int = 6
    lam: float = 0.3
    variant: str = "standard"  # what the neighbours are ranked by (evaluation.rerank.VARIANTS)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "k1": self.k1, "k2": self.k2, "lambda": self.lam, "variant": self.variant}

    @classmethod
    def from_dict(cls, data: Any, where: str = "rerank", source: str = "") -> "Rerank":
        r = _Reader(source)
        enabled = r.get(data, "enabled", where)
        if not isinstance(enabled, bool):
            raise r.fail(f"key '{where}.enabled' should be true or false, got {enabled!r}")
        variant = r.text(data, "variant", where, required=False, default="standard")
        if not _VARIANT_NAME.fullmatch(variant):
            raise r.fail(f"key '{where}.variant' should be a re-ranking variant name (lower-case letters, digits "
                         f"and '-', e.g. 'standard'), got {variant!r}")
        if not enabled:  # its k1, k2, lambda mean nothing
            return cls(False, variant=variant)
        return cls(True, r.integer(data, "k1", where), r.integer(data, "k2", where),
                   r.number(data, "lambda", where), variant)


@dataclass(frozen=True)
class TrialResult:
    """One gallery trial of a protocol."""

    trial: int
    mAP: float
    mINP: float
    r1: float
    r5: float
    r10: float
    r20: float
    n_queries: int | None = None
    n_queries_skipped: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"trial": self.trial, **{m: getattr(self, m) for m in METRICS}}
        if self.n_queries is not None:
            out.update(n_queries=self.n_queries, n_queries_skipped=self.n_queries_skipped)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str, source: str = "") -> "TrialResult":
        r = _Reader(source)
        return cls(r.integer(data, "trial", where), *(r.number(data, m, where, percent=True) for m in METRICS),
                   r.integer(data, "n_queries", where, required=False),
                   r.integer(data, "n_queries_skipped", where, required=False))


@dataclass(frozen=True)
class ProtocolResult:
    """One protocol under one re-ranking setting: means over trials (percentages), the mean CMC
    curve, per-trial values and the sample SD over trials, with what produced them."""

    protocol: str
    direction: str  # "i2v" or "v2i"
    trials: list[int]
    rerank: Rerank
    distance: str
    dataset_fingerprint: str
    mAP: float
    mINP: float
    r1: float
    r5: float
    r10: float
    r20: float
    cmc: list[float]
    per_trial: list[TrialResult] = field(default_factory=list)
    std: dict[str, float] = field(default_factory=dict)
    n_queries: int | None = None
    n_queries_skipped: int | None = None

    def metric(self, name: str) -> float:
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "direction": self.direction, "trials": list(self.trials),
            "rerank": self.rerank.to_dict(), "distance": self.distance, "dataset_fingerprint": self.dataset_fingerprint,
            **{m: getattr(self, m) for m in METRICS}, "cmc": list(self.cmc),
            "per_trial": [t.to_dict() for t in self.per_trial], "std": dict(self.std), "n_queries": self.n_queries,
            "n_queries_skipped": self.n_queries_skipped,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "", source: str = "",
                  known_protocols: list[str] | None = None) -> "ProtocolResult":
        """Read and check one result; ``known_protocols`` (if given) must list its protocol."""
        r = _Reader(source)
        protocol = r.text(data, "protocol", where)
        if known_protocols is not None and protocol not in known_protocols:
            raise r.fail(f"key '{_join(where, 'protocol')}' names an unknown protocol {protocol!r}; known: "
                         + ", ".join(known_protocols))
        rerank = Rerank.from_dict(r.get(data, "rerank", where), _join(where, "rerank"), source)
        cmc = r.get(data, "cmc", where)
        if not isinstance(cmc, list) or not cmc:
            raise r.fail(f"key '{_join(where, 'cmc')}' should be a non-empty list of percentages, got {cmc!r}")
        cmc = [r.check_number(v, f"{_join(where, 'cmc')}[{i}]", percent=True) for i, v in enumerate(cmc)]
        trials = r.items(data, "trials", where, required=False)
        if any(isinstance(t, bool) or not isinstance(t, int) for t in trials):
            raise r.fail(f"key '{_join(where, 'trials')}' should be a list of trial numbers, got {trials!r}")
        std = r.get(data, "std", where, required=False, default={}) or {}
        if not isinstance(std, Mapping):
            raise r.fail(f"key '{_join(where, 'std')}' should be a mapping of metric to SD over trials, got {std!r}")
        spread = {}
        for metric in METRICS:
            if metric in std:
                value = r.number(std, metric, _join(where, "std"))
                if value < 0:
                    raise r.fail(f"key '{_join(where, 'std')}.{metric}' should be a non-negative SD, got {value!r}")
                spread[metric] = value
        per_trial = [TrialResult.from_dict(t, f"{_join(where, 'per_trial')}[{i}]", source)
                     for i, t in enumerate(r.items(data, "per_trial", where, required=False))]
        # r5 came later than the other metrics: a file without it reads R5 from its CMC curve
        r5 = r.number(data, "r5", where, required=False, percent=True)
        return cls(
            protocol=protocol, direction=r.text(data, "direction", where, required=False, default="") or "",
            trials=list(trials), rerank=rerank,
            distance=r.text(data, "distance", where, required=False, default="unspecified"),
            dataset_fingerprint=r.text(data, "dataset_fingerprint", where, required=False, default=""),
            mAP=r.number(data, "mAP", where, percent=True), mINP=r.number(data, "mINP", where, percent=True),
            r1=r.number(data, "r1", where, percent=True), r5=r5 if r5 is not None else cmc[min(5, len(cmc)) - 1],
            r10=r.number(data, "r10", where, percent=True), r20=r.number(data, "r20", where, percent=True),
            cmc=cmc, per_trial=per_trial, std=spread,
            n_queries=r.integer(data, "n_queries", where, required=False),
            n_queries_skipped=r.integer(data, "n_queries_skipped", where, required=False))


@dataclass
class RunInfo:
    """What produced a run's results: the variant, dataset, seed, settings and provenance."""

    variant: str
    dataset: str
    seed: int | None
    variant_label: str = ""
    ablation_order: float | None = None
    method: str = ""
    dataset_label: str = ""
    mlflow_run_id: str | None = None
    git_commit: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # flat: "train.lr" -> value
    train_seconds: float | None = None
    selected_epoch: int | None = None
    best_validation: dict[str, Any] | None = None
    kind: str = "trained"  # RUN_KINDS
    imported: dict[str, Any] | None = None  # kind "imported": format, label, file, sha256

    def __post_init__(self) -> None:  # an empty label is the name
        self.variant_label = self.variant_label or self.variant
        self.method = self.method or self.variant
        self.dataset_label = self.dataset_label or self.dataset

    def to_dict(self) -> dict[str, Any]:
        out = {"variant": self.variant, "variant_label": self.variant_label,
               "ablation_order": self.ablation_order, "method": self.method, "dataset": self.dataset,
               "dataset_label": self.dataset_label, "seed": self.seed,
               "mlflow_run_id": self.mlflow_run_id, "git_commit": self.git_commit, "params": dict(self.params),
               "train_seconds": self.train_seconds, "selected_epoch": self.selected_epoch,
               "best_validation": self.best_validation}
        for key in ("mlflow_run_id", "git_commit", "train_seconds"):  # trained runs keep them in run.local.json
            if out[key] is None:
                del out[key]
        if self.kind != "trained":
            out.update(kind=self.kind, imported=self.imported)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "run", source: str = "") -> "RunInfo":
        r = _Reader(source)
        variant = r.text(data, "variant", where)
        dataset = r.text(data, "dataset", where)
        order = r.get(data, "ablation_order", where, required=False)
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise r.fail(f"key '{where}.ablation_order' should be a number or null, got {order!r}")
        params = r.get(data, "params", where, required=False, default={}) or {}
        if not isinstance(params, Mapping):
            raise r.fail(f"key '{where}.params' should be a mapping, got {type(params).__name__}")
        kind = r.text(data, "kind", where, required=False, default="trained")
        if kind not in RUN_KINDS:
            raise r.fail(f"key '{where}.kind' should be one of {', '.join(RUN_KINDS)}, got {kind!r}")
        imported = None
        if kind == "imported":
            imported = dict(r.get(data, "imported", where))
            r.text(imported, "label", f"{where}.imported")
        return cls(
            variant=variant, dataset=dataset, seed=r.get(data, "seed", where),
            variant_label=r.text(data, "variant_label", where, required=False, default=variant) or variant,
            ablation_order=order, method=r.text(data, "method", where, required=False, default=variant) or variant,
            dataset_label=r.text(data, "dataset_label", where, required=False, default=dataset) or dataset,
            mlflow_run_id=r.text(data, "mlflow_run_id", where, required=False),
            git_commit=r.text(data, "git_commit", where, required=False), params=dict(params),
            train_seconds=r.number(data, "train_seconds", where, required=False),
            selected_epoch=r.get(data, "selected_epoch", where, required=False),
            best_validation=r.get(data, "best_validation", where, required=False), kind=kind, imported=imported)


@dataclass
class MetricsFile:
    run: RunInfo
    results: list[ProtocolResult]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run.to_dict(), "results": [res.to_dict() for res in self.results]}

    @classmethod
    def from_dict(cls, data: Any, source: str = "", known_protocols: list[str] | None = None,
                  require_results: bool = False) -> "MetricsFile":
        """Read and check; ``require_results``: a file without results (a stub) is refused."""
        r = _Reader(source)
        if not isinstance(data, Mapping):
            raise r.fail(f"expected a JSON object with keys 'run' and 'results', got {type(data).__name__}")
        results = r.get(data, "results", "")
        if not isinstance(results, list):
            raise r.fail(f"key 'results' should be a list, got {type(results).__name__}")
        if require_results and not results:
            raise r.fail("holds no test results (a stub or interrupted run); train the run again")
        run = RunInfo.from_dict(r.get(data, "run", ""), "run", source)
        return cls(run, [ProtocolResult.from_dict(res, f"results[{i}]", source, known_protocols)
                         for i, res in enumerate(results)])

    @classmethod
    def read(cls, path, known_protocols: list[str] | None = None, require_results: bool = False) -> "MetricsFile":
        """Read and check a metrics.json (errors name the file)."""
        import json
        from pathlib import Path

        path = Path(path)
        r = _Reader(str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise r.fail(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except UnicodeDecodeError:
            raise r.fail("not a UTF-8 text file") from None
        return cls.from_dict(data, str(path), known_protocols, require_results)
