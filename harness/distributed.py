"""torch.distributed glue: ranks from the torchrun environment, DDP wrapping, gathering.

With one process every function is a no-op, so the trainer has a single code path.
"""
from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or tdist.is_initialized():
        return tdist.is_initialized()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    tdist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return True


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP with several processes, the model itself with one."""
    return model if world_size() == 1 else ddp(model, device)


def ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The DistributedDataParallel wrapper training uses (an initialised process group)."""
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # Unused parameters exist when a loss term is switched off (e.g. the IP classifier).
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of `indices` (strided, so shards differ by at most one row)."""
    return indices[rank()::world_size()]


def gather_rows(local: np.ndarray, total: int) -> np.ndarray | None:
    """Reassemble rows sharded by `shard` on rank 0 (others get None)."""
    if world_size() == 1:
        return local
    parts: list[np.ndarray] | None = [None] * world_size() if rank() == 0 else None  # type: ignore[list-item]
    tdist.gather_object(local, parts, dst=0)
    if rank() != 0:
        return None
    out = np.empty((total,) + parts[0].shape[1:], dtype=parts[0].dtype)
    for r, part in enumerate(parts):
        out[r::world_size()] = part
    return out
