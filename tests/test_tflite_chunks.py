"""How TFLiteRunner splits prompts over fixed-length signatures (pure arithmetic, no runtime)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinyexport.runners.tflite_chunks import Chunk, padded_inputs, plan_chunks

LENGTHS = (1, 4, 8)  # decode + prefill_4 + prefill_8


@pytest.mark.parametrize(
    "position, n, cache, expected",
    [
        (0, 1, 32, [Chunk(1, 0, 1)]),  # one token: decode, not a padded prefill
        (0, 3, 32, [Chunk(4, 0, 3)]),  # smallest signature that holds the prompt
        (0, 4, 32, [Chunk(4, 0, 4)]),
        (0, 5, 32, [Chunk(8, 0, 5)]),
        (0, 21, 32, [Chunk(8, 0, 8), Chunk(8, 8, 8), Chunk(8, 16, 5)]),  # longer prompts: chunks of the largest
        (26, 5, 32, [Chunk(4, 26, 4), Chunk(1, 30, 1)]),  # prefill_8 would write past slot 31
        (28, 4, 32, [Chunk(4, 28, 4)]),  # exactly up to the end
        (29, 3, 32, [Chunk(1, 29, 1), Chunk(1, 30, 1), Chunk(1, 31, 1)]),  # no prefill fits any more
    ],
)
def test_plan_chunks(position, n, cache, expected):
    assert plan_chunks(position, n, LENGTHS, cache) == expected


def test_plan_chunks_invariants_over_many_cases():
    rng = np.random.default_rng(0)
    for _ in range(500):
        cache = int(rng.integers(1, 64))
        lengths = tuple(sorted({1, *(int(x) for x in rng.integers(2, 40, rng.integers(0, 4)))}))
        position = int(rng.integers(0, cache))
        n = int(rng.integers(1, cache - position + 1))
        chunks = plan_chunks(position, n, lengths, cache)
        assert sum(c.count for c in chunks) == n
        assert chunks[0].start == position
        for a, b in itertools.pairwise(chunks):
            assert b.start == a.start + a.count  # contiguous
            assert a.count == a.length  # only the last chunk is padded
        for c in chunks:
            assert c.length in lengths and 1 <= c.count <= c.length
            assert c.start + c.length <= cache  # never a clamped dynamic_update_slice


def test_plan_chunks_refuses_overflow_and_missing_decode():
    with pytest.raises(ValueError, match="exceed"):
        plan_chunks(30, 3, LENGTHS, 32)
    with pytest.raises(ValueError, match="decode"):
        plan_chunks(0, 3, (4, 8), 32)


def test_padding_repeats_the_last_token_at_its_position():
    ids, pos = padded_inputs(np.array([7, 8, 9]), Chunk(8, 10, 3))
    assert ids.dtype == np.int32 and ids.shape == (1, 8)
    assert ids[0].tolist() == [7, 8, 9, 9, 9, 9, 9, 9]
    assert pos.tolist() == [10, 11, 12, 12, 12, 12, 12, 12]
    ids, pos = padded_inputs(np.array([5]), Chunk(1, 3, 1))
    assert ids.tolist() == [[5]] and pos.tolist() == [3]
    with pytest.raises(ValueError):
        padded_inputs(np.array([1, 2]), Chunk(4, 0, 3))
