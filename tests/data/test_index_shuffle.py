"""mlcv.data.index_shuffle against grain's own index_shuffle, index by index."""

import numpy as np
import pytest
from grain.python import experimental as grain_experimental

from mlcv.data import index_shuffle


@pytest.mark.parametrize("n", [1, 2, 7, 511, 512, 1257, 50_000, 65_537, 70_000])
@pytest.mark.parametrize("seed", [0, 5, 2**32 - 1])
def test_epoch_permutation_is_grains_index_shuffle(n, seed):
    """Splits below and above the vectorised path's threshold, 16- and 18-bit blocks, and 65,537 records, whose
    last index (2**16) lies outside its block domain."""
    perm = index_shuffle.epoch_permutation(n, seed)
    indices = np.unique(np.r_[np.arange(0, n, max(1, n // 600)), n - 1])
    expected = [grain_experimental.index_shuffle(int(i), max_index=n - 1, seed=seed, rounds=4) for i in indices]
    np.testing.assert_array_equal(perm[indices], expected)
    # Grain's own shuffle repeats records when N - 1 is a power of two of 16 bits or more (its blocks are one bit
    # short); mlcv keeps grain's order there too, so that both loaders agree.
    if n != 65_537:
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))  # a permutation of the split


def test_round_keys_are_std_seed_seq():
    """``std::seed_seq{0u}.generate`` of 4 words, as a C++ program built with g++ (libstdc++) printed them."""
    assert index_shuffle._seed_seq(0, 4) == [2_963_817_213, 69_796_629, 1_973_464_570, 532_167_439]
