"""The small building blocks of the vectorised evaluation: ragged ranges and thread blocks."""
from __future__ import annotations

import numpy as np
import pytest

from vireid.harness.evaluation.parallel import Workers, balanced_blocks, run_all
from vireid.harness.evaluation.ragged import owners, segments


@pytest.mark.parametrize("counts", [[], [0], [0, 0, 3], [2, 0, 0, 1, 0], [1, 1, 1], [5]])
def test_owners_and_segments_equal_repeat(counts):
    counts = np.array(counts, dtype=np.int64)
    starts = np.arange(len(counts)) * 10 + 3
    expected_owner = np.repeat(np.arange(len(counts)), counts)
    np.testing.assert_array_equal(owners(counts), expected_owner)
    expected = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)] or [np.zeros(0, np.int64)])
    np.testing.assert_array_equal(segments(starts, counts), expected)
    np.testing.assert_array_equal(segments(starts, counts, expected_owner), expected)


@pytest.mark.parametrize("n, size, workers", [(10, 3, 2), (7, 100, 2), (1, 1, 4), (100, 7, 3), (5, 1, 8)])
def test_balanced_blocks_cover_the_rows_in_equal_shares(n, size, workers):
    blocks = balanced_blocks(n, size, workers)
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a < b and b == c for (a, b), (c, _) in zip(blocks, blocks[1:] + [(n, n)]))
    lengths = [b - a for a, b in blocks]
    assert max(lengths) - min(lengths) <= 1
    assert len(blocks) % workers == 0 or len(blocks) == n


def test_workers_run_every_task_and_reraise_the_first_error():
    seen = []
    with Workers(2) as pool:
        pool([lambda i=i: seen.append(i) for i in range(20)])
        pool([lambda i=i: seen.append(i) for i in range(20, 25)])  # the same pool, a second round
    assert sorted(seen) == list(range(25))

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_all([lambda: None, fail, lambda: None], workers=2)
