"""One training run, end to end: resolved params -> trained model -> test results on disk.

Outputs in `run_dir`: params.yaml, history.csv, checkpoint.pt, features.npz (the
`eval-features` format), metrics.json, cmc.csv. Everything is logged to MLflow when
tracking is on. Model selection only ever looks at the validation identities; the test
protocols run once, at the end.
"""
from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vireid.harness import distributed as dist
from vireid.harness.checkpoint import CheckpointError
from vireid.harness.cli import is_user_error
from vireid.harness.config import Params, dump_params
from vireid.harness.schema import ConfigError
from vireid.harness.schema import build as build_dataclass
from vireid.harness.io import atomic_save, atomic_write_json, atomic_write_text
from vireid.harness.run_folder import CHECKPOINT, LOCAL_INFO


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def build_method(params: Params, num_classes: int) -> torch.nn.Module:
    from vireid.methods import build_model

    try:
        return build_model(params.model.method, num_classes=num_classes, backbone=params.model.backbone,
                           weights=params.model.weights, last_stride=params.model.last_stride,
                           loss=params.loss, options=params.model.options)
    except ValueError as exc:  # the methods' own checks of the model settings (weights file, ...)
        raise ConfigError(f"model: {exc}") from None
    except FileNotFoundError as exc:
        raise ConfigError(f"model.weights: {exc}; the default file is the pipeline's pretrained backbone "
                          "(`dvc repro pretrain` writes it); --set model.weights=none trains from scratch") from None


def restore_model(params: Params | dict, num_classes: int, state_dict: dict) -> torch.nn.Module:
    """The model of a run's params (a Params or a checkpoint's plain copy) holding `state_dict`;
    built without `model.weights`, which the state dict replaces (the file need not exist here)."""
    if isinstance(params, dict):
        params = build_dataclass(Params, params)
    model = build_method(replace(params, model=replace(params.model, weights="none")),
                         num_classes)
    model.load_state_dict(state_dict, strict=True)
    return model


def query_gallery_indices(records, split: str, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Infrared images are the query set, visible images the gallery (as the public code)."""
    sub = records.loc[indices] if indices is not None else records[records["split"] == split]
    query = sub.index[sub["modality"] == "infrared"].to_numpy()
    gallery = sub.index[sub["modality"] == "visible"].to_numpy()
    return query, gallery


def features_arrays(data, feats_q: np.ndarray, feats_g: np.ndarray, q_idx: np.ndarray,
                    g_idx: np.ndarray) -> dict[str, np.ndarray]:
    rec = data.records
    return {
        "query_feats": feats_q, "query_ids": rec["pid"].to_numpy()[q_idx],
        "query_cams": rec["cam"].to_numpy()[q_idx], "query_paths": rec["path"].to_numpy(str)[q_idx],
        "gallery_feats": feats_g, "gallery_ids": rec["pid"].to_numpy()[g_idx],
        "gallery_cams": rec["cam"].to_numpy()[g_idx], "gallery_paths": rec["path"].to_numpy(str)[g_idx],
    }


def extract_test_arrays(model, data, batch_size: int, transform, device,
                        amp_dtype) -> dict[str, np.ndarray] | None:
    """The test step, shared by training and `vireid evaluate` of an imported checkpoint: test
    features of the test split (infrared queries, visible gallery) in the features-file format,
    extracted on every rank and gathered to rank 0 (None on the others)."""
    from vireid.harness.data import extract_features

    q_idx, g_idx = query_gallery_indices(data.records, "test")
    fq, fg = (dist.gather_rows(extract_features(model, data, dist.shard(idx), batch_size, transform, device,
                                                amp_dtype), len(idx))
              for idx in (q_idx, g_idx))
    return features_arrays(data, fq, fg, q_idx, g_idx) if dist.rank() == 0 else None


def evaluate_arrays(arrays: dict[str, np.ndarray], protocols: list[str], data_root: Path, rerank: bool,
                    rerank_params: Any, fingerprint: str, trials: list[int] | None = None) -> list[dict[str, Any]]:
    from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays

    return [evaluate_protocol_arrays(arrays, name, data_root=data_root, trials=trials, rerank=rerank,
                                     k1=rerank_params.k1, k2=rerank_params.k2, lam=rerank_params.lam,
                                     variant=rerank_params.variant, dataset_fingerprint=fingerprint)
            for name in protocols]


def validation_fn(model, data, val_idx, batch_size, transform, device, amp_dtype) -> Callable[[], dict]:
    """Cross-modal validation on held-out training identities: infrared -> visible, all images."""
    from vireid.harness.evaluation.evaluate import evaluate_cross_modal
    from vireid.harness.data import extract_features

    q_idx, g_idx = query_gallery_indices(data.records, "train", val_idx)

    def run() -> dict[str, Any]:
        fq = extract_features(model, data, q_idx, batch_size, transform, device, amp_dtype)
        fg = extract_features(model, data, g_idx, batch_size, transform, device, amp_dtype)
        rec = data.records
        return evaluate_cross_modal(fq, rec["pid"].to_numpy()[q_idx], rec["cam"].to_numpy()[q_idx],
                                    fg, rec["pid"].to_numpy()[g_idx], rec["cam"].to_numpy()[g_idx],
                                    dataset=data.dataset)

    return run


def cmc_table(results: list[dict[str, Any]]) -> str:
    lines = ["protocol,rerank,rank,cmc"]
    for res in results:
        for rank, value in enumerate(res["cmc"], start=1):
            lines.append(f"{res['protocol']},{int(res['rerank']['enabled'])},{rank},{value:.6f}")
    return "\n".join(lines) + "\n"


def run_training(params: Params, run_dir: str | Path, resume: bool | str = False,
                 report: Callable[[float, int], None] | None = None, progress: bool = True,
                 mlflow_parent: str | None = None, run_name: str | None = None,
                 extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train, select, test and write every output of one run. Returns the metrics dict.

    The named steps, each usable alone: `build` (data, model, optimiser, trainer, resumed
    state), `fit` (train, select the epoch), `run_test` (test features, every protocol) and
    `write` (the run folder and its MLflow artifacts); `vireid evaluate` reuses `run_test`'s parts
    (extract_test_arrays, evaluate_arrays) on an imported checkpoint. `resume`: False (the folder
    must be empty), True (continue its checkpoint) or "partial" (continue an unfinished run of the
    same settings, else start over): `harness/run_folder.py`.
    """
    from vireid.harness import run_folder

    run_dir = Path(run_dir)
    with run_folder.claimed(run_dir, enabled=dist.rank() == 0):
        return _train(params, run_dir, resume, report, progress, mlflow_parent, run_name, extra_tags)


@dataclass
class TrainingRun:
    """What `build` makes of the params, for `fit`, `run_test` and `write`."""
    params: Params
    run_dir: Path
    data: Any                    # harness.data.PreparedData
    core: torch.nn.Module        # the model itself (the DDP-wrapped or compiled one is trainer.model)
    trainer: Any                 # harness.trainer.Trainer
    device: torch.device
    amp_dtype: torch.dtype | None
    eval_transform: torch.nn.Module
    is_main: bool
    code: str                    # digest of the code (run_folder.code_digest)


def build(params: Params, run_dir: Path, resume: bool | str = False,
          report: Callable[[float, int], None] | None = None, progress: bool = True,
          mlflow_hook: bool = False) -> TrainingRun:
    """Data, sampler, augmentation, model, optimiser, scheduler, hooks and trainer of one run;
    the checkpoint loaded when `resume` says so (run_folder.plan); params.yaml written."""
    from vireid.datasets.samplers import ModalityBalancedIdentitySampler
    from vireid.datasets.transforms import EvalTransform, TrainAugment
    from vireid.harness.data import TrainBatches, load_prepared, split_identities
    from vireid.harness.hooks import CheckpointHook, HistoryHook, MLflowHook, ProgressHook, ValidationHook
    from vireid.harness.run_folder import code_digest, plan
    from vireid.harness.trainer import Trainer, build_optimizer, build_scheduler, resolve_amp
    from vireid.methods import param_groups

    rank, world = dist.rank(), dist.world_size()
    is_main = rank == 0
    cfg = params.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)

    data = load_prepared(params.data)
    train_idx, val_idx = split_identities(data.records, cfg.val_fraction)
    try:
        sampler = ModalityBalancedIdentitySampler(
            data.records["pid"].to_numpy()[train_idx], data.modality_codes[train_idx], p=cfg.p, k=cfg.k,
            seed=cfg.seed, rank=rank, world_size=world)
    except ValueError as exc:  # e.g. fewer identities with both modalities than train.p
        raise ConfigError(f"train.p / train.k on {params.data.prepared_dir}: {exc}") from None
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * rank)
    size = (params.data.image_height, params.data.image_width)
    aug = cfg.augment
    augment = TrainAugment(size, flip=aug.flip, pad=aug.pad, pad_fill=aug.pad_fill,
                           random_erasing=aug.random_erasing, channel_aug=aug.channel_aug).to(device)
    eval_transform = EvalTransform().to(device)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    batches = TrainBatches(data, train_idx, sampler, augment, device, generator, channels_last)

    core = build_method(params, batches.num_classes).to(device)
    if channels_last:
        core = core.to(memory_format=torch.channels_last)
    if world > 1 and cfg.sync_bn:
        core = torch.nn.SyncBatchNorm.convert_sync_batchnorm(core)
    model = dist.wrap(core, device)
    if cfg.compile:
        model = torch.compile(model)
    amp_dtype = resolve_amp(cfg.amp, device)
    # Parameter groups are the method's (e.g. AGW's backbone at a tenth of the heads' lr); the first
    # group runs at train.lr, which the history's `lr` column shows.
    optimizer = build_optimizer(param_groups(core, cfg.lr), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = build_scheduler(optimizer, cfg.milestones, cfg.gamma, cfg.warmup_epochs, cfg.warmup_factor,
                                cfg.warmup_rule)

    hooks = []
    if len(val_idx):
        hooks.append(ValidationHook(
            validation_fn(core, data, val_idx, cfg.eval_batch_size, eval_transform, device, amp_dtype),
            every=cfg.val_every, metric=cfg.select_metric))
    hooks.append(ProgressHook(bar=progress and is_main))  # after validation: its metrics are on the line
    if is_main:
        hooks += [HistoryHook(run_dir / "history.csv"), CheckpointHook(run_dir / CHECKPOINT, cfg.checkpoint_every)]
        if mlflow_hook:
            hooks.append(MLflowHook())
    code = code_digest()
    meta = {"method": params.model.method, "num_classes": batches.num_classes, "params": params.to_dict(),
            "dataset_fingerprint": data.fingerprint, "code_digest": code}
    trainer = Trainer(model, core, optimizer, scheduler, batches, cfg.epochs, device, hooks, amp_dtype,
                      cfg.grad_clip, generator, cfg.steps_per_epoch, meta, report=report)
    if plan(run_dir, resume, params, data.fingerprint, code, is_main):
        try:
            trainer.resume(run_dir / CHECKPOINT)
        except (ValueError, RuntimeError, KeyError) as exc:  # a checkpoint of other settings
            if is_user_error(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CheckpointError(f"{run_dir / CHECKPOINT}: does not fit this run's settings "
                                  f"({type(exc).__name__}: {first[:300]})") from None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_params(params, run_dir / "params.yaml")
    return TrainingRun(params, run_dir, data, core, trainer, device, amp_dtype, eval_transform, is_main, code)


def fit(run: TrainingRun) -> float:
    """Train the remaining epochs and load the selected epoch's weights; returns the seconds."""
    started = time.perf_counter()
    run.trainer.train()
    if run.params.train.select == "best" and run.trainer.best_state is not None:
        run.core.load_state_dict(run.trainer.best_state)
    return time.perf_counter() - started


def run_test(run: TrainingRun) -> tuple[dict[str, np.ndarray] | None, list[dict[str, Any]]]:
    """The test protocols, once, at the end: (features arrays, results) on rank 0, (None, []) on
    the others (features are gathered to rank 0)."""
    params = run.params
    arrays = extract_test_arrays(run.core, run.data, params.train.eval_batch_size, run.eval_transform, run.device,
                                 run.amp_dtype)
    if arrays is None:
        return None, []
    return arrays, evaluate_arrays(arrays, params.protocols(), run.data.root, params.eval.rerank,
                                   params.eval.rerank_params, run.data.fingerprint, params.eval.trials)


def write(run: TrainingRun, arrays: dict[str, np.ndarray], results: list[dict[str, Any]], train_seconds: float,
          mlflow_run_id: str | None = None) -> dict[str, Any]:
    """features.npz, metrics.json, run.local.json and cmc.csv in the run folder (rank 0); with
    `mlflow_run_id`, the result metrics and the folder's files logged to that active MLflow run."""
    from vireid.harness import tracking
    from vireid.harness.evaluation.features_file import save_features
    from vireid.harness.evaluation.results import RunInfo

    params, cfg, trainer, run_dir = run.params, run.params.train, run.trainer, run.run_dir
    save_features(run_dir / "features.npz", arrays)
    run_info = RunInfo(
        variant=params.experiment.name, variant_label=params.experiment.label or params.experiment.name,
        ablation_order=params.experiment.ablation_order, method=params.model.method,
        dataset=params.data.name, dataset_label=params.data.label, seed=cfg.seed, params=params.flat(),
        selected_epoch=trainer.best["epoch"] if cfg.select == "best" and trainer.best else cfg.epochs,
        best_validation=trainer.best)
    # What differs between two runs of the same code and settings (ids, the commit, wall-clock)
    # goes to run.local.json, which DVC ignores, so a DVC output has the same bytes in any clone.
    local = {"mlflow_run_id": mlflow_run_id, "git_commit": tracking.git_commit(),
             "train_seconds": round(train_seconds, 2), "epochs": trainer.timing}
    metrics = {"run": run_info.to_dict(), "results": results}
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / LOCAL_INFO, local)
    atomic_write_text(run_dir / "cmc.csv", cmc_table(results))
    if mlflow_run_id is not None:
        import mlflow

        tracking.log_result_metrics(results)
        mlflow.log_metric("train_seconds", train_seconds)
        names = ["params.yaml", "history.csv", "metrics.json", LOCAL_INFO, "cmc.csv"]
        names += [CHECKPOINT, "features.npz"] if params.tracking.log_checkpoint else []
        for name in names:
            mlflow.log_artifact(str(run_dir / name))
        plot = plot_cmc(results, run_dir / "cmc.png")
        if plot:
            mlflow.log_artifact(str(plot))
    return metrics


def _train(params: Params, run_dir: Path, resume: bool | str, report: Callable[[float, int], None] | None,
           progress: bool, mlflow_parent: str | None, run_name: str | None,
           extra_tags: dict[str, str] | None) -> dict[str, Any]:
    from vireid.harness import tracking

    use_mlflow = params.tracking.enabled and dist.rank() == 0
    if use_mlflow:
        experiment_id = tracking.connect(params.tracking.uri, params.tracking.experiment)
    run = build(params, run_dir, resume, report, progress, mlflow_hook=use_mlflow)
    mlflow_run = contextlib.nullcontext()
    store_errors = tracking.store_errors(params.tracking.uri) if use_mlflow else contextlib.nullcontext()
    if use_mlflow:
        tags = tracking.run_tags(params, extra_tags, run_dir)
        if mlflow_parent:
            tags["mlflow.parentRunId"] = mlflow_parent
        mlflow_run = tracking.training_run(experiment_id, params, run_name or tracking.run_name(params), tags)
    with store_errors, mlflow_run as active, tracking.closed_as_killed(use_mlflow):
        if use_mlflow:
            tracking.log_params_flat(params.flat())
            tracking.log_dataset(params.data.name, params.data.prepared_dir, run.data.fingerprint)
        train_seconds = fit(run)
        arrays, results = run_test(run)
        if not run.is_main:
            return {}
        return write(run, arrays, results, train_seconds, active.info.run_id if use_mlflow else None)


def plot_cmc(results: list[dict[str, Any]], path: Path) -> Path | None:
    if not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vireid.harness.evaluation.evaluate import rerank_suffix

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for res in results:
        cmc = res["cmc"][:20]
        label = res["protocol"] + (f" (re-ranked{rerank_suffix(res['rerank'], ', ')})" if res["rerank"]["enabled"]
                                   else "")
        ax.plot(range(1, len(cmc) + 1), cmc, marker=".", label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), suffix=".png")
    plt.close(fig)
    return path
