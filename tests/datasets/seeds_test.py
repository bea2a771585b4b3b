"""Both built-in data sets take seeds alike: numpy ints too, bad ones named."""

import re

import numpy as np
import pytest

from seglayers.datasets import shapes, volumes


@pytest.mark.parametrize("dataset", [shapes, volumes], ids=["shapes", "volumes"])
@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (1.5, TypeError), ("a", TypeError), (True, TypeError)],
)
def test_bad_seeds_name_the_argument(dataset, seed, error):
    with pytest.raises(
        error,
        match=r"^`seed` must be a non-negative int \(or None\), e\.g\. seed=0\. "
        rf"Received: seed={re.escape(repr(seed))}$",
    ):
        dataset.load_data(num_samples=1, seed=seed)


@pytest.mark.parametrize("dataset", [shapes, volumes], ids=["shapes", "volumes"])
def test_numpy_integer_seeds_are_seeds(dataset):
    np.testing.assert_array_equal(
        dataset.load_data(num_samples=1, seed=np.int64(3))[1],
        dataset.load_data(num_samples=1, seed=3)[1],
    )
