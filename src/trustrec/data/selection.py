"""Forget-set selection (CURE4Rec): which users, interactions or items to forget.

Users are ranked by their number of training interactions; only users with at least one
training row are candidates. For a ratio p the forget set has ``n = floor(n_active * p)``
users (at least 1; a 1e-9 guard absorbs binary rounding, so 100 × 0.29 gives 29):

* ``core``: the n most active users,
* ``edge``: the n least active users,
* ``random``: n users drawn without replacement from ``rng(seed, "forget", "random")``.

Ties in the count are broken by user index, lower first, in both rankings (a stable sort),
so the selection depends only on the data. Results are sorted index arrays, ready for a
:class:`~trustrec.data.request.ForgetRequest`.

Items work the same way (``popular`` / ``unpopular`` / ``random`` by training count), and
interactions are a seeded draw of distinct (user, item) pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, InvalidRequestError
from trustrec.registry import Registry
from trustrec.seeding import rng

#: A selection rule: (candidate ids, their counts, n, seed) → chosen ids.
Selector = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]

SELECTIONS: Registry[Selector] = Registry("forget-set selection")
ITEM_SELECTIONS: Registry[Selector] = Registry("item selection")


def _most(ids: np.ndarray, counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    return ids[np.lexsort((ids, -counts))[:n]]


def _least(ids: np.ndarray, counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    return ids[np.lexsort((ids, counts))[:n]]


def _random_users(ids: np.ndarray, counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    return rng(seed, "forget", "random").choice(ids, size=n, replace=False)


def _random_items(ids: np.ndarray, counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    return rng(seed, "forget", "items", "random").choice(ids, size=n, replace=False)


SELECTIONS.register("core")(_most)
SELECTIONS.register("edge")(_least)
SELECTIONS.register("random")(_random_users)
ITEM_SELECTIONS.register("popular")(_most)
ITEM_SELECTIONS.register("unpopular")(_least)
ITEM_SELECTIONS.register("random")(_random_items)


def _check_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)):
        raise ConfigError(f"forget ratio must be a number in (0, 1), got {ratio!r}")
    r = float(ratio)
    if not 0.0 < r < 1.0:
        raise ConfigError(f"forget ratio must be in (0, 1) (e.g. 0.05 for 5%), got {ratio!r}")
    return r


def forget_count(n_candidates: int, ratio: float) -> int:
    """``floor(n_candidates * ratio)``, at least 1 (with a 1e-9 rounding guard)."""
    return max(1, int(np.floor(n_candidates * _check_ratio(ratio) + 1e-9)))


def _select(counts: np.ndarray, registry: Registry[Selector], selection: str, ratio: float,
            seed: int, what: str) -> np.ndarray:
    rule = registry.get(selection)
    _check_ratio(ratio)
    ids = np.flatnonzero(counts > 0)
    if len(ids) == 0:
        raise InvalidRequestError(f"no {what} with training interactions to select from")
    n = forget_count(len(ids), ratio)
    chosen = rule(ids, counts[ids], n, int(seed))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def select_forget_users(train: Dataset, selection: str, ratio: float, seed: int) -> np.ndarray:
    """Users to forget, chosen the CURE4Rec way.

    Args:
        train: the training data (counts are taken from it).
        selection: ``"core"`` (most active), ``"edge"`` (least active) or ``"random"``.
        ratio: share of users with training rows to select, in (0, 1).
        seed: root seed (``random`` draws from ``rng(seed, "forget", "random")``).

    Returns:
        Sorted int64 user indices, ``max(1, floor(n_active * ratio))`` of them.

    Raises:
        UnknownNameError: unknown ``selection``.
        ConfigError: ``ratio`` outside (0, 1).
        InvalidRequestError: ``train`` has no interactions.
    """
    return _select(train.user_counts(), SELECTIONS, selection, ratio, seed, "users")


def select_forget_items(train: Dataset, ratio: float, seed: int,
                        selection: str = "random") -> np.ndarray:
    """Items to forget: ``"popular"``, ``"unpopular"`` or ``"random"`` by training count.

    Same rules as :func:`select_forget_users` (items with at least one training row are
    candidates; ties by item index; ``random`` draws from
    ``rng(seed, "forget", "items", "random")``).

    Returns:
        Sorted int64 item indices.
    """
    return _select(train.item_counts(), ITEM_SELECTIONS, selection, ratio, seed, "items")


def select_forget_interactions(train: Dataset, ratio: float, seed: int) -> np.ndarray:
    """Random (user, item) interactions to forget.

    Draws ``max(1, floor(n_pairs * ratio))`` distinct pairs among the distinct pairs of
    ``train`` (duplicate rows count once) from ``rng(seed, "forget", "interactions")``.

    Returns:
        ``(k, 2)`` int64 array of ``(user, item)``, sorted by user then item.
    """
    ratio = _check_ratio(ratio)
    keys = np.unique(train.pair_keys())
    if len(keys) == 0:
        raise InvalidRequestError("no interactions to select from")
    n = forget_count(len(keys), ratio)
    chosen = np.sort(rng(seed, "forget", "interactions").choice(keys, size=n, replace=False))
    return np.stack([chosen // train.n_items, chosen % train.n_items], axis=1).astype(np.int64)
