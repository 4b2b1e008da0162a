"""Optuna tuning of loss weights on the *validation* identities (never the test set).

A study lives in an Optuna storage (SQLite file by default, a journal file, or any RDB
URL such as PostgreSQL), so several `vireid tune` processes, on one machine or many,
share its trials. In MLflow the study is a parent run and each trial a nested child run. A
failing trial (NaN loss, exception) is recorded as failed and the study goes on; on an RDB
storage, a trial whose worker died (no heartbeat for `tune.grace_period` s) is failed too.

A study is identified by what defines it: the digest of the prepared dataset's fingerprint,
the trials' resolved settings (experiment, model, loss, train), the search space, the fixed
overrides and the metric (`study_definition`). The default study name carries the digest
(`<tune.study_name>-<digest[:12]>`), so re-running resumes only an identical study and any
change starts a new one; a study named with `--study` must match its recorded digest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from vireid.harness.config import Params, TuneConfig, load_params
from vireid.harness.io import atomic_write_text
from vireid.harness.schema import ConfigError, flatten
from vireid.harness.tracking import store_errors

PARENT_RUN_ATTR = "mlflow_parent_run_id"
DIGEST_ATTR = "definition_digest"
DEFINITION_ATTR = "definition"
# Trial settings outside the digest: where files live and how fast they are read (the dataset's
# content is in its fingerprint), and labels.
UNDEFINING_KEYS = ("data.root", "data.prepared_dir", "data.cache_workers", "data.name", "data.label")


class TuningError(RuntimeError):
    """A tuning worker process failed (its own output says why)."""


def report_reaped(study, trial) -> None:
    """Optuna's failed-trial callback: say which trial a dead worker left behind."""
    print(f"tune: trial {trial.number} of study {study.study_name!r} sent no heartbeat (its worker died); "
          "marked failed")


def make_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """`sqlite:///f.db`, `postgresql://...` (any SQLAlchemy URL), or a journal file path.
    RDB storages get Optuna's heartbeat: running trials of dead workers are failed."""
    import optuna

    if "://" in url:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        beat = ({"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                 "heartbeat_stale_trial_callback": report_reaped} if heartbeat_interval else {})
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                          if url.startswith("sqlite") else {}, **beat)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@contextlib.contextmanager
def storage_errors(cfg: TuneConfig):
    """A corrupt SQLite file, a garbage journal line or an unreachable server, as one ConfigError."""
    try:
        yield
    except OSError:
        raise
    except ConfigError:
        raise
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"tune.storage {cfg.storage!r}: cannot open the Optuna storage "
                          f"({type(exc).__name__}: {first}); fix or move the file away") from None


def open_storage(cfg: TuneConfig):
    with storage_errors(cfg):
        return make_storage(cfg.storage, cfg.heartbeat_interval, cfg.grace_period)


def load_study(cfg: TuneConfig, study_name: str | None = None, storage=None, worker_index: int = 0):
    """The study with its sampler and pruner. Worker i samples with seed tune.seed + i: workers
    with one seed would draw the same parameters at the same moment (the same random start-up
    trials, the same TPE suggestion from the same finished trials)."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=cfg.seed + worker_index, n_startup_trials=max(cfg.n_startup_trials, 1))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
              if cfg.pruner == "median" else optuna.pruners.NopPruner())
    with storage_errors(cfg):
        return optuna.create_study(study_name=study_name or cfg.study_name, storage=storage or open_storage(cfg),
                                   sampler=sampler, pruner=pruner, direction="maximize", load_if_exists=True)


def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        if spec.type == "float":
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
        else:
            values[key] = trial.suggest_categorical(key, list(spec.choices))
    return values


def as_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in sorted(values.items())]


def ensure_parent_run(study, params: Params, n_trials: int) -> str | None:
    """The study's MLflow parent run id (created once, remembered in the study); a closed one is
    opened again while the study still lacks finished trials (a resumed or extended study)."""
    if not params.tracking.enabled:
        return None
    from vireid.harness import tracking
    import mlflow

    experiment_id = tracking.connect(params.tracking.uri, params.tracking.experiment)
    client = mlflow.tracking.MlflowClient()
    existing = study.user_attrs.get(PARENT_RUN_ATTR)
    if existing:
        if client.get_run(existing).info.status != "RUNNING" and finished_trials(study) < n_trials:
            client.update_run(existing, status="RUNNING")
        return existing
    run = client.create_run(experiment_id, run_name=f"study:{study.study_name}",
                            tags={"optuna_study": study.study_name, "kind": "optuna-study",
                                  "mlflow.source.git.commit": tracking.git_commit()})
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    return study.user_attrs.get(PARENT_RUN_ATTR, run.info.run_id)


def trial_overrides(base: list[str], cfg: TuneConfig, values: dict[str, Any]) -> list[str]:
    """A trial's `--set` list: the command's, then tune.overrides, then the sampled values."""
    fixed = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in cfg.overrides.items()]
    return list(base) + fixed + as_overrides(values)


def preflight(params_path: str | None, overrides: list[str], cfg: TuneConfig, dataset: str | None) -> Params:
    """Resolve one trial's parameters (every search-space key at its low end / first choice)
    before any trial starts: a typo in tune.experiment, tune.overrides or a search-space key
    fails here once, instead of failing every trial while the study exits 0. Returns them."""
    if not cfg.search_space:
        raise ConfigError("tune.search_space: expected at least one parameter to tune")
    values = {key: (spec.choices[0] if spec.type == "categorical" else
                    int(spec.low) if spec.type == "int" else float(spec.low))
              for key, spec in cfg.search_space.items()}
    try:
        return load_params(params_path, cfg.experiment, trial_overrides(overrides, cfg, values), dataset)
    except ConfigError as exc:
        raise ConfigError(f"tune: a trial's parameters do not resolve (tune.experiment {cfg.experiment!r}, "
                          f"tune.overrides, tune.search_space): {exc}") from None


def dataset_fingerprint(data_cfg) -> str:
    """The prepared dataset's content fingerprint; tuning on an unprepared dataset is an error."""
    from vireid.datasets.manifest import read_manifest
    from vireid.datasets.prepare import MANIFEST_NAME, NOT_PREPARED

    path = Path(data_cfg.prepared_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(f"tune: dataset {data_cfg.name!r} is not prepared (no {path}); {NOT_PREPARED}")
    return read_manifest(path).fingerprint


def study_definition(trial: Params, cfg: TuneConfig, fingerprint: str) -> dict[str, Any]:
    """Everything that defines a study's objective; `trial` is a resolved trial's params."""
    from dataclasses import asdict

    settings = {key: value for key, value in trial.flat().items()
                if key.split(".")[0] in ("data", "model", "loss", "train") and key not in cfg.search_space
                and key not in UNDEFINING_KEYS}
    return {"dataset_fingerprint": fingerprint, "experiment": cfg.experiment, "metric": cfg.metric,
            "search_space": {key: asdict(spec) for key, spec in sorted(cfg.search_space.items())},
            "overrides": dict(sorted(cfg.overrides.items())), "trial_settings": settings}


def definition_digest(definition: dict[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def claim_study(study, definition: dict[str, Any], digest: str, storage: str) -> None:
    """Record the definition in a new study; refuse a study that was defined otherwise."""
    recorded = study.user_attrs.get(DIGEST_ATTR)
    if recorded == digest:
        return
    if recorded is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(DEFINITION_ATTR, json.loads(json.dumps(definition, default=str)))
        study.set_user_attr(DIGEST_ATTR, digest)
        return
    old = flatten(study.user_attrs.get(DEFINITION_ATTR) or {})
    new = flatten(json.loads(json.dumps(definition, default=str)))  # as the storage keeps it
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))
    what = (f"was defined with digest {recorded[:12]}; differing: {', '.join(differing[:8]) or '?'}"
            if recorded else "holds trials but no definition digest (made by an older vireid)")
    raise ConfigError(f"tune: study {study.study_name!r} in {storage} {what}. Its trials answer another "
                      "question: leave out --study (the default name carries the definition's digest) or "
                      "name a new study")


class Objective:
    """Train one trial's configuration; report validation per epoch; return the best value."""

    def __init__(self, params_path: str | None, base_overrides: list[str], out_dir: Path, parent_run: str | None,
                 progress: bool = False, dataset: str | None = None):
        self.params_path = params_path
        self.dataset = dataset
        self.base_overrides = base_overrides
        self.out_dir = out_dir
        self.parent_run = parent_run
        self.progress = progress

    def __call__(self, trial) -> float:
        import optuna

        from vireid.harness.runner import run_training

        base = load_params(self.params_path, None, self.base_overrides, self.dataset)
        cfg = base.tune
        values = suggest(trial, cfg.search_space)
        overrides = trial_overrides(self.base_overrides, cfg, values)
        params = load_params(self.params_path, cfg.experiment, overrides, self.dataset)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine and process ran it

        def report(value: float, epoch: int) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with {cfg.metric} {value:.2f}")

        run_dir = self.out_dir / "trials" / f"{trial.study.study_name}-{trial.number:04d}"
        metrics = run_training(params, run_dir, report=report, progress=self.progress,
                               mlflow_parent=self.parent_run, run_name=f"trial-{trial.number}",
                               extra_tags={"optuna_study": trial.study.study_name,
                                           "optuna_trial": str(trial.number)})
        best = metrics["run"]["best_validation"]
        if not best or not math.isfinite(best["value"]):
            raise ConfigError("trial produced no validation result (set train.val_fraction > 0)")
        return float(best["value"])


def finished_trials(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def worker(params_path: str | None, overrides: list[str], study_name: str, n_trials: int,
           timeout: float | None, out_dir: str, parent_run: str | None, dataset: str | None = None,
           progress: bool = False, worker_index: int = 0) -> None:
    """One worker process (the `worker_index`-th of a `vireid tune`): run trials until the study
    holds `n_trials` finished trials."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from vireid.harness.logs import configure_logging

    configure_logging()  # a spawned worker starts with a fresh logging set-up
    params = load_params(params_path, None, overrides, dataset)
    study = load_study(params.tune, study_name, worker_index=worker_index)
    objective = Objective(params_path, overrides, Path(out_dir), parent_run, progress, dataset)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    remaining = n_trials - finished_trials(study)
    if remaining <= 0:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One line per trial (log_trial); each trial's epoch lines only with --progress.
    epoch_lines = logging.getLogger("vireid.train")
    level = epoch_lines.level
    epoch_lines.setLevel(logging.INFO if progress else logging.WARNING)
    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(Exception,),
                       callbacks=[MaxTrialsCallback(n_trials, states=done), log_trial])
    finally:
        epoch_lines.setLevel(level)


def log_trial(study, trial) -> None:
    """One line per finished trial: number, state, value (or the epoch it was pruned at), its
    sampled values and the study's best so far."""
    from optuna.trial import TrialState

    parts = [f"trial {trial.number}", trial.state.name]
    if trial.state == TrialState.COMPLETE:
        parts.append(f"value {trial.value:.2f}")
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        epoch = max(trial.intermediate_values)
        parts.append(f"at epoch {epoch} ({trial.intermediate_values[epoch]:.2f})")
    parts.append(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()))
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if complete:
        best = max(complete, key=lambda t: t.value)
        parts.append(f"best {best.value:.2f} (trial {best.number})")
    logging.getLogger("vireid.tune").info(" | ".join(parts))


def run_study(params_path: str | None, overrides: list[str], study_name: str | None = None,
              n_trials: int | None = None, jobs: int | None = None, out_dir: str | Path = "tune",
              best_params_path: str | Path | None = None, progress: bool = False,
              dataset: str | None = None) -> dict[str, Any]:
    """Run (or resume) a study with `jobs` worker processes; write the best parameters.

    `dataset` names an `experiments/data/<name>.yaml` overlay (None: params.yaml's data block).
    """
    for flag, value in (("--n-trials", n_trials), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: expected a number >= 1, got {value}")
    params = load_params(params_path, None, overrides, dataset)
    cfg = params.tune
    trial = preflight(params_path, list(overrides), cfg, dataset)
    storage = open_storage(cfg)  # a broken storage is named before the dataset is looked at
    fingerprint = dataset_fingerprint(trial.data)
    definition = study_definition(trial, cfg, fingerprint)
    digest = definition_digest(definition)
    name = study_name or f"{cfg.study_name}-{digest[:12]}"
    n_trials = cfg.n_trials if n_trials is None else n_trials
    jobs = cfg.jobs if jobs is None else jobs
    study = load_study(cfg, name, storage)
    claim_study(study, definition, digest, cfg.storage)
    with store_errors(params.tracking.uri):
        parent = ensure_parent_run(study, params, n_trials)
    args = (params_path, list(overrides), name, n_trials, cfg.timeout, str(out_dir), parent, dataset)
    if jobs == 1:
        worker(*args, progress=progress)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker, args=args, kwargs={"worker_index": i}) for i in range(jobs)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise TuningError(f"{len(failed)} tuning worker(s) exited with codes {failed}")
    study = load_study(cfg, name)
    reap_stale_trials(study)
    summary = summarize(study, digest, fingerprint)
    if best_params_path:
        write_best_params(summary, best_params_path)
    with store_errors(params.tracking.uri):
        close_parent_run(params, parent, summary)
    return summary


def reap_stale_trials(study) -> None:
    """Fail the running trials of dead workers now (Optuna does it when a trial starts)."""
    import optuna

    if isinstance(study._storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)


def summarize(study, digest: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {name: sum(t.state == state for t in trials)
              for name, state in (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED),
                                  ("failed", TrialState.FAIL), ("running", TrialState.RUNNING))}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    out: dict[str, Any] = {"study": study.study_name, "definition_digest": digest,
                           "dataset_fingerprint": fingerprint, "n_trials": len(trials), "states": counts}
    if complete:
        best = study.best_trial
        out.update(best_trial=best.number, best_value=best.value, params=dict(best.params),
                   overrides=as_overrides(best.params))
    return out


def write_best_params(summary: dict[str, Any], path: str | Path) -> None:
    header = ("# Written by `vireid tune`; apply with `vireid train --best-params <this file>`.\n"
              "# params.yaml is never rewritten by the tuner.\n")
    atomic_write_text(path, header + yaml.safe_dump(summary, sort_keys=False))


def close_parent_run(params: Params, parent: str | None, summary: dict[str, Any]) -> None:
    """Log the study's result on its parent run and close it, once: the first worker process to
    finish closes it; one finding it closed already (several machines on one study) leaves it."""
    if not parent:
        return
    import mlflow

    client = mlflow.tracking.MlflowClient()
    if client.get_run(parent).info.status != "RUNNING":
        return
    if "best_value" in summary:
        client.log_metric(parent, "best_value", summary["best_value"])
        for key, value in summary["params"].items():
            client.set_tag(parent, f"best.{key}", str(value))
    for state, count in summary["states"].items():
        client.log_metric(parent, f"trials_{state}", count)
    client.set_terminated(parent, "FINISHED")
