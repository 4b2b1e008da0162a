"""Sampler invariants: batch layout, modality balance, exclusions, determinism, sharding, state."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from vireid.datasets.errors import DatasetWarning
from vireid.datasets.samplers import ModalityBalancedIdentitySampler, RandomBatchSampler


def _toy(n_ids=12, seed=0):
    """Identities with uneven image counts per modality (some below K/2)."""
    rng = np.random.default_rng(seed)
    pids, mods = [], []
    for pid in range(n_ids):
        for modality in (0, 1):
            n = int(rng.integers(1, 9))
            pids += [100 + pid] * n
            mods += [modality] * n
    order = rng.permutation(len(pids))  # local indices in no particular order
    return np.array(pids)[order], np.array(mods)[order]


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_batch_layout_and_balance():
    pids, mods = _toy()
    sampler = ModalityBalancedIdentitySampler(pids, mods, p=4, k=6, seed=1)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 4 * 6 and all(isinstance(i, int) for i in batch)
        groups = np.array(batch).reshape(4, 6)
        assert len({pids[g[0]] for g in groups}) == 4  # P distinct identities
        for g in groups:
            assert len(set(pids[g])) == 1
            assert mods[g].tolist() == [1, 0, 1, 0, 1, 0]  # IR, RGB interleaved as the public code


def test_epoch_length_follows_the_smaller_modality():
    pids = np.repeat(np.arange(8), 10)
    mods = np.tile([0] * 6 + [1] * 4, 8)  # 6 visible, 4 infrared per identity
    sampler = ModalityBalancedIdentitySampler(pids, mods, p=4, k=4, seed=0)
    assert len(sampler) == 8 * (4 // 2) // 4  # two K-chunks per identity, P identities per batch
    seen = np.concatenate([np.array(b) for b in _epoch(sampler, 0)])
    assert len(set(seen[mods[seen] == 1])) == 32  # every infrared image once


def test_identities_with_one_modality_are_excluded():
    pids = np.repeat(np.arange(6), 4)
    mods = np.tile([0, 0, 1, 1], 6)
    mods[pids == 2] = 0
    with pytest.warns(DatasetWarning, match=r"one modality only are never sampled \(1\): \[2\]"):
        sampler = ModalityBalancedIdentitySampler(pids, mods, p=2, k=2, seed=0)
    for epoch in range(10):
        for batch in _epoch(sampler, epoch):
            assert 2 not in pids[batch]


def test_deterministic_per_seed_and_epoch():
    pids, mods = _toy()
    a = ModalityBalancedIdentitySampler(pids, mods, p=3, k=4, seed=7)
    b = ModalityBalancedIdentitySampler(pids, mods, p=3, k=4, seed=7)
    c = ModalityBalancedIdentitySampler(pids, mods, p=3, k=4, seed=8)
    assert _epoch(a, 2) == _epoch(b, 2)
    assert _epoch(a, 2) != _epoch(a, 3)
    assert _epoch(a, 2) != _epoch(c, 2)


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_and_union_is_the_global_batch(world_size):
    pids, mods = _toy(n_ids=18)
    single = ModalityBalancedIdentitySampler(pids, mods, p=2 * world_size, k=4, seed=3)
    ranks = [ModalityBalancedIdentitySampler(pids, mods, p=2, k=4, seed=3, rank=r, world_size=world_size)
             for r in range(world_size)]
    for epoch in (0, 1):
        whole = _epoch(single, epoch)
        parts = [_epoch(s, epoch) for s in ranks]
        assert all(len(p) == len(whole) == len(s) for p, s in zip(parts, ranks))
        for step, batch in enumerate(whole):
            shares = [p[step] for p in parts]
            assert sum(shares, []) == batch
            ids = [set(pids[s]) for s in shares]
            assert all(not ids[i] & ids[j] for i in range(world_size) for j in range(i + 1, world_size))


def test_state_dict_is_plain_and_restores_the_epoch():
    pids, mods = _toy()
    sampler = ModalityBalancedIdentitySampler(pids, mods, p=3, k=4, seed=5)
    sampler.set_epoch(4)
    state = sampler.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = ModalityBalancedIdentitySampler(pids, mods, p=3, k=4, seed=0)
    fresh.load_state_dict(loaded)
    assert (fresh.seed, fresh.epoch) == (5, 4)
    assert list(fresh) == list(sampler)
    with pytest.raises(ValueError, match="does not match"):
        ModalityBalancedIdentitySampler(pids, mods, p=2, k=4).load_state_dict(loaded)


def test_invalid_arguments():
    pids, mods = _toy()
    with pytest.raises(ValueError, match="even k"):
        ModalityBalancedIdentitySampler(pids, mods, p=2, k=3)
    with pytest.raises(ValueError, match="identities have both modalities"):
        ModalityBalancedIdentitySampler(pids, mods, p=7, k=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ModalityBalancedIdentitySampler(pids, mods, p=2, k=2, rank=2, world_size=2)


def test_random_batch_sampler():
    sampler = RandomBatchSampler(50, 8, seed=1)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == 6 and all(len(b) == 8 for b in batches)
    flat = sum(batches, [])
    assert len(set(flat)) == 48
    assert _epoch(sampler, 0) == batches and _epoch(sampler, 1) != batches
    shards = [RandomBatchSampler(50, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    for step, parts in enumerate(zip(*[_epoch(s, 0) for s in shards])):
        assert sum(parts, []) == batches[step]
    assert RandomBatchSampler(50, 8).state_dict() == {"seed": 0, "epoch": 0, "batch_size": 8}
