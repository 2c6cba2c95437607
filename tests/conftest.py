"""Shared fixtures: real MovieLens-100K from ../shared/data (never committed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustrec.data.loaders import load_recbole

ML100K_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """Folder of the real MovieLens-100K RecBole atomic files (skips when absent)."""
    if not ML100K_DIR.is_dir():
        pytest.skip(f"MovieLens-100K not found at {ML100K_DIR}")
    return ML100K_DIR


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens-100K as a Dataset (943 users, 1,682 items, 100,000 interactions)."""
    if not ML100K_DIR.is_dir():
        pytest.skip(f"MovieLens-100K not found at {ML100K_DIR}")
    return load_recbole(ML100K_DIR, "ml-100k")


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    """The default 80/10/10 per-user random split of MovieLens-100K, seed 0."""
    from trustrec.data.split import random_split

    return random_split(ml100k, (0.8, 0.1, 0.1), seed=0)
