"""Train / validation / test splits of one Dataset (same id space)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.seeding import rng


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of one dataset, sharing its id space."""

    train: Dataset
    valid: Dataset
    test: Dataset

    def known(self) -> Dataset:
        """Training and validation rows together: what is known when the test rows are
        predicted (the history a sequential model reads at test time, and the items the
        test ranking masks)."""
        import dataclasses

        t, v = self.train, self.valid
        ratings = (None if t.ratings is None or v.ratings is None
                   else np.concatenate([t.ratings, v.ratings]))
        return dataclasses.replace(t, name=f"{t.name}+valid",
                                   users=np.concatenate([t.users, v.users]),
                                   items=np.concatenate([t.items, v.items]),
                                   timestamps=np.concatenate([t.timestamps, v.timestamps]),
                                   ratings=ratings)


def _rank_within_user(users: np.ndarray, order_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user when rows are sorted by ``order_key``,
    and the user's row count, both per row."""
    order = np.lexsort((order_key, users))
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.empty(len(users), dtype=np.int64)
    pos[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return pos, counts[users]


def random_split(ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> Split:
    """Per-user random split into train / validation / test.

    For a user with n rows, ``round(n * ratios[2])`` rows go to test and
    ``round(n * ratios[1])`` to validation, but at least one row always stays in train
    (users with one row have it in train only). Which rows go where is a seeded shuffle
    within each user, derived from ``seed``.

    Args:
        ds: the dataset.
        ratios: train, validation, test shares; must be non-negative and sum to 1.
        seed: root seed (the shuffle uses ``child_seed(seed, "split")``).
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or abs(r.sum() - 1) > 1e-9 or r[0] <= 0:
        raise ConfigError(f"split ratios must be three non-negative shares summing to 1 with "
                          f"a positive train share, got {tuple(ratios)}")
    key = rng(seed, "split").random(ds.n_interactions)
    pos, n = _rank_within_user(ds.users, key)
    n_test = np.round(n * r[2]).astype(np.int64)
    n_valid = np.round(n * r[1]).astype(np.int64)
    over = np.maximum(n_test + n_valid - (n - 1), 0)  # keep at least one training row
    n_valid = np.maximum(n_valid - over, 0)
    n_test = np.minimum(n_test, n - 1 - n_valid)
    test = pos < n_test
    valid = (pos >= n_test) & (pos < n_test + n_valid)
    return Split(ds.select(~test & ~valid), ds.select(valid), ds.select(test))


def _count(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ConfigError(f"leave_last_out: {name} must be a non-negative integer, got {v!r}")
    return int(v)


def leave_last_out(ds: Dataset, n_valid: int = 1, n_test: int = 1) -> Split:
    """Per-user temporal split: each user's last rows go to test, the ones before to validation.

    Rows are ordered by timestamp within each user, ties broken by row order (a later row
    counts as later). For a user with n rows, ``min(n_test, n - 1)`` last rows go to test and
    then up to ``n_valid`` rows before them to validation, so every user keeps at least one
    training row (a user with one row has it in train only).

    Args:
        ds: the dataset.
        n_valid: validation rows per user.
        n_test: test rows per user.
    """
    n_valid, n_test = _count("n_valid", n_valid), _count("n_test", n_test)
    if ds.n_interactions == 0:
        return Split(ds, ds, ds)
    pos, n = _rank_within_user(ds.users, ds.timestamps)
    from_end = n - 1 - pos  # 0 = the user's last row
    t = np.minimum(n_test, n - 1)
    v = np.minimum(n_valid, n - 1 - t)
    test = from_end < t
    valid = ~test & (from_end < t + v)
    return Split(ds.select(~test & ~valid), ds.select(valid), ds.select(test))


def temporal_split(ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
                   ) -> Split:
    """Global temporal split: the earliest rows train, the next validate, the latest test.

    Rows are ordered by timestamp (ties by row order) and cut at the shares' quantiles:
    the first ``round(n * ratios[0])`` rows train, the next ``round(n * ratios[1])``
    validate, the rest test. Unlike the per-user splits, a user may have no training row
    (it joined late): evaluation then ranks it from whatever the model knows.

    Args:
        ds: the dataset.
        ratios: train, validation, test shares; non-negative, summing to 1, train > 0.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r[0] <= 0 or abs(r.sum() - 1.0) > 1e-9:
        raise ConfigError(f"split ratios must be three non-negative shares summing to 1 with "
                          f"a positive train share, got {tuple(ratios)}")
    n = ds.n_interactions
    order = np.lexsort((np.arange(n), ds.timestamps))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    n_train = int(round(n * r[0]))
    n_valid = int(round(n * r[1]))
    train = rank < n_train
    valid = (rank >= n_train) & (rank < n_train + n_valid)
    return Split(ds.select(train), ds.select(valid), ds.select(~train & ~valid))


#: The ways :func:`make_split` splits a dataset.
SPLITS = ("random", "leave_last_out", "temporal")


def make_split(ds: Dataset, how: str, ratios: tuple[float, float, float], seed: int
               ) -> Split:
    """Split ``ds`` by ``how``: ``"random"`` (per user, seeded), ``"leave_last_out"``
    (each user's last row to test, the one before to validation) or ``"temporal"``.

    Raises:
        ConfigError: an unknown ``how``.
    """
    if how not in SPLITS:
        raise ConfigError(f"unknown split {how!r}; choose one of {', '.join(SPLITS)}")
    if how == "random":
        return random_split(ds, ratios, seed=seed)
    if how == "leave_last_out":
        return leave_last_out(ds)
    return temporal_split(ds, ratios)
