"""Small federations of MovieLens-100K users for the federated tests."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.dataset import Dataset
from trustrec.data.split import Split, random_split

#: A small NeuMF for the core's tests (fast, every part of the tower exercised).
TINY_NCF = {"gmf_dim": 4, "mlp_dim": 4, "layers": (8, 4)}


@pytest.fixture(scope="session")
def small_split(ml100k: Dataset) -> Split:
    """The default random split of the first 40 users (and every item) of MovieLens-100K."""
    keep = ml100k.users < 40
    return random_split(ml100k.select(keep, name="ml-100k-40"), (0.8, 0.1, 0.1), seed=0)


@pytest.fixture(scope="session")
def small_users() -> np.ndarray:
    """The clients of the small federation."""
    return np.arange(40)
