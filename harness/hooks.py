"""Trainer hooks (fast-reid style): each hook does one job around the training loop.

A hook sees the trainer object and may read `trainer.epoch`, `trainer.step`,
`trainer.last_losses`, `trainer.history` and `trainer.best`. Hooks run in list order.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vireid.harness.io import atomic_write_text

if TYPE_CHECKING:
    from vireid.harness.trainer import Trainer


class Hook:
    def before_train(self, trainer: "Trainer") -> None: ...
    def before_epoch(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer") -> None: ...
    def after_epoch(self, trainer: "Trainer") -> None: ...
    def after_train(self, trainer: "Trainer") -> None: ...


class ProgressHook(Hook):
    """One log line per epoch (every loss term, the validation metrics when computed, throughput,
    ETA), always; a tqdm bar inside the epoch only with `bar` on a terminal.

    Put it after the ValidationHook so that the epoch's validation metrics are on its line.
    """

    def __init__(self, bar: bool = True, logger: logging.Logger | None = None):
        from vireid.harness.logs import is_tty

        self.bar_enabled = bar and is_tty()
        self.log = logger or logging.getLogger("vireid.train")
        self.bar = None
        self.epoch_started = 0.0
        self.durations: list[float] = []

    def before_epoch(self, trainer):
        self.epoch_started = time.perf_counter()
        if self.bar_enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.step_in_epoch,
                            desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}", leave=False, dynamic_ncols=True)

    def after_step(self, trainer):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in trainer.last_losses.items()}, refresh=False)

    def after_epoch(self, trainer):
        from vireid.harness.logs import format_duration

        if self.bar is not None:
            self.bar.close()
            self.bar = None
        # Wall time of this process's epochs, validation included (a resumed run has no earlier ones).
        self.durations.append(time.perf_counter() - self.epoch_started)
        row = trainer.history[-1]
        parts = [f"epoch {row['epoch']}/{trainer.epochs}", f"loss {row['loss']:.4f}"]
        parts += [f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("loss/")]
        parts += [f"val {k[4:]} {v:.2f}" for k, v in row.items() if k.startswith("val/")]
        parts.append(f"{trainer.timing[-1]['images_per_s']:.0f} img/s")
        remaining = trainer.epochs - row["epoch"]
        parts.append(f"ETA {format_duration(remaining * sum(self.durations) / len(self.durations))}")
        self.log.info(" | ".join(parts))


class HistoryHook(Hook):
    """Per-epoch history CSV, rewritten atomically after every epoch."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def after_epoch(self, trainer):
        keys: list[str] = []
        for row in trainer.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(trainer.history)
        atomic_write_text(self.path, buf.getvalue())


class ValidationHook(Hook):
    """Evaluate the held-out training identities every `every` epochs (never the test set)."""

    def __init__(self, evaluate: Callable[[], dict[str, Any]], every: int, metric: str):
        self.evaluate = evaluate
        self.every = every
        self.metric = metric

    def after_epoch(self, trainer):
        last = trainer.epoch + 1 == trainer.epochs
        if (trainer.epoch + 1) % self.every and not last:
            return
        result = self.evaluate()
        row = trainer.history[-1]
        for key in ("r1", "mAP", "mINP"):
            row[f"val/{key}"] = float(result[key])
        value = float(result[self.metric])
        if trainer.best is None or value > trainer.best["value"]:
            trainer.best = {"value": value, "epoch": trainer.epoch + 1, "metric": self.metric}
            trainer.on_new_best()
        trainer.report_validation(value)


class CheckpointHook(Hook):
    """Full-state checkpoint every `every` epochs and at the end (rank 0 only)."""

    def __init__(self, path: Path, every: int):
        self.path = Path(path)
        self.every = every

    def after_epoch(self, trainer):
        if (trainer.epoch + 1) % self.every == 0 or trainer.epoch + 1 == trainer.epochs:
            trainer.save(self.path)


class MLflowHook(Hook):
    """Every loss term, the learning rate, throughput and validation metrics per epoch."""

    def after_epoch(self, trainer):
        import mlflow

        row = {**trainer.history[-1], **trainer.timing[-1]}
        metrics = {k.replace("/", "."): float(v) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)}
        mlflow.log_metrics(metrics, step=row["epoch"])
