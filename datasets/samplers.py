"""Batch samplers for training: P identities x K images, and plain random batches.

Both yield lists of *local* indices (into the arrays they were built from), are seeded by
``(seed, epoch)`` through :meth:`set_epoch`, and shard each global batch across ranks.
Their state (:meth:`state_dict`) is a dict of ints, which ``torch.load(weights_only=True)``
accepts; the trainer resumes at epoch boundaries, so seed + epoch is the whole state.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np

from vireid.datasets.errors import DatasetWarning

__all__ = ["ModalityBalancedIdentitySampler", "RandomBatchSampler"]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")


class _EpochSeeded:
    """set_epoch / state_dict / load_state_dict shared by the samplers."""

    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _shape(self) -> dict[str, int]:
        """The batch-shape settings a saved state must agree with."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, int]:
        return {"seed": int(self.seed), "epoch": int(self.epoch), **self._shape()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatch = {k: (v, state.get(k)) for k, v in self._shape().items() if k in state and int(state[k]) != v}
        if mismatch:
            raise ValueError(f"sampler state does not match this sampler: {mismatch} (saved, current)")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])


class ModalityBalancedIdentitySampler(_EpochSeeded):
    """P identities x K images per batch, K/2 infrared and K/2 visible per identity.

    Follows the public IDKL code's ``identity_random`` sampler (RandomIdentitySampler of
    data/sampler.py): each identity's infrared and visible images are shuffled, cut to the
    same number, interleaved ``IR, RGB, IR, RGB, ...`` and split into chunks of K; batches
    are then formed by repeatedly drawing P distinct identities among those with chunks
    left and taking each one's next chunk, until fewer than P identities have chunks left.
    An epoch therefore has about sum_i min(n_ir_i, n_vis_i) / (P * K/2) batches, i.e.
    roughly 2 * min-modality images / batch size. Unlike the public code, an identity whose
    smaller modality has fewer than K/2 images is drawn with replacement (one chunk)
    instead of silently never being sampled. Identities with images in one modality only
    are excluded, with a :class:`DatasetWarning`.

    With ``world_size`` > 1 every rank computes the same global schedule with P x
    world_size identities per batch and keeps identities ``rank*P .. rank*P + P - 1`` of
    each: the ranks' batches are disjoint and their union is the single-process batch of
    P x world_size identities.
    """

    def __init__(self, pids, modalities, p: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        pids = np.asarray(pids)
        modalities = np.asarray(modalities)
        if pids.ndim != 1 or pids.shape != modalities.shape:
            raise ValueError(f"pids and modalities must be 1-D arrays of the same length, got {pids.shape} "
                             f"and {modalities.shape}")
        if not np.isin(modalities, (0, 1)).all():
            raise ValueError("modalities must be codes 0 (visible) or 1 (infrared)")
        if p < 1 or k < 2 or k % 2:
            raise ValueError(f"expected p >= 1 and an even k >= 2, got p={p}, k={k}")
        _check_rank(rank, world_size)
        self.p, self.k, self.half = int(p), int(k), int(k) // 2
        self.seed, self.epoch = int(seed), 0
        self.rank, self.world_size = int(rank), int(world_size)
        order = np.lexsort((np.arange(len(pids)), modalities, pids))  # by pid, then modality, then index
        identities, first = np.unique(pids[order], return_index=True)
        groups = np.split(order, first[1:])
        self.visible: list[np.ndarray] = []
        self.infrared: list[np.ndarray] = []
        kept, excluded = [], []
        for pid, group in zip(identities.tolist(), groups):
            vis, ir = group[modalities[group] == 0], group[modalities[group] == 1]
            if len(vis) and len(ir):
                self.visible.append(vis)
                self.infrared.append(ir)
                kept.append(pid)
            else:
                excluded.append(pid)
        self.identities = np.array(kept)
        self.excluded = excluded
        if excluded:
            warnings.warn(f"identity sampler: identities with images in one modality only are never sampled "
                          f"({len(excluded)}): {excluded[:20]}", DatasetWarning, stacklevel=2)
        needed = self.p * self.world_size
        if len(self.identities) < needed:
            raise ValueError(f"identity sampler: {len(self.identities)} identities have both modalities; a batch "
                             f"needs P x world_size = {needed}")
        self._cache: tuple[tuple[int, int], list[np.ndarray]] | None = None

    def _shape(self) -> dict[str, int]:
        return {"p": self.p, "k": self.k}

    def _chunks(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Per identity, an (n_chunks, K) array of local indices ordered IR, RGB, IR, RGB, ..."""
        out = []
        for vis, ir in zip(self.visible, self.infrared):
            n = max(min(len(vis), len(ir)) // self.half, 1) * self.half
            picks = [rng.permutation(x)[:n] if len(x) >= n else rng.choice(x, n, replace=True) for x in (ir, vis)]
            out.append(np.stack(picks, axis=1).reshape(-1, self.k))
        return out

    def _global_batches(self) -> list[np.ndarray]:
        """This epoch's global batches, each (P x world_size, K); cached per (seed, epoch)."""
        key = (self.seed, self.epoch)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        rng = self._rng()
        chunks = self._chunks(rng)
        left = np.array([len(c) for c in chunks])
        used = np.zeros_like(left)
        per_batch = self.p * self.world_size
        batches = []
        while np.count_nonzero(left) >= per_batch:
            chosen = rng.choice(np.flatnonzero(left), per_batch, replace=False)
            batches.append(np.stack([chunks[i][used[i]] for i in chosen]))
            used[chosen] += 1
            left[chosen] -= 1
        self._cache = (key, batches)
        return batches

    def __len__(self) -> int:
        return len(self._global_batches())

    def __iter__(self) -> Iterator[list[int]]:
        mine = slice(self.rank * self.p, (self.rank + 1) * self.p)
        for batch in self._global_batches():
            yield batch[mine].reshape(-1).tolist()


class RandomBatchSampler(_EpochSeeded):
    """Random batches of ``batch_size`` indices from range(n), a fresh permutation per epoch.

    The last incomplete global batch is dropped (the public code's ``drop_last=True``).
    With ``world_size`` > 1 each global batch of ``batch_size * world_size`` is cut into
    consecutive per-rank shares, disjoint across ranks.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or n < batch_size * world_size:
            raise ValueError(f"need n >= batch_size x world_size >= 1, got n={n}, batch_size={batch_size}, "
                             f"world_size={world_size}")
        _check_rank(rank, world_size)
        self.n, self.batch_size = int(n), int(batch_size)
        self.seed, self.epoch = int(seed), 0
        self.rank, self.world_size = int(rank), int(world_size)

    def _shape(self) -> dict[str, int]:
        return {"batch_size": self.batch_size}

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        per = self.batch_size * self.world_size
        batches = self._rng().permutation(self.n)[:len(self) * per].reshape(len(self), self.world_size,
                                                                            self.batch_size)
        for batch in batches[:, self.rank]:
            yield batch.tolist()
