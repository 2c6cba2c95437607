"""Vectorised uniform negative sampling (no Python loop over interactions)."""

from __future__ import annotations

import numpy as np


def sample_negatives(users: np.ndarray, pos_keys_sorted: np.ndarray, n_items: int,
                     rng: np.random.Generator, n_neg: int = 1, max_rounds: int = 50) -> np.ndarray:
    """Draw ``n_neg`` items per row of ``users`` that the user has not interacted with.

    Rejection sampling, vectorised: draw for all rows, re-draw only the rows that hit a
    positive, until none remain (or ``max_rounds``; leftovers keep their last draw, which
    for any realistic density never happens).

    Args:
        users: user index per row (int).
        pos_keys_sorted: sorted int64 keys ``user * n_items + item`` of all positives.
        n_items: catalogue size.
        rng: generator (derived from the run's seed).
        n_neg: negatives per row.
        max_rounds: cap on re-draw rounds.

    Returns:
        int64 array ``(len(users), n_neg)`` (squeezed to 1-D when ``n_neg == 1``).
    """
    u = np.repeat(np.asarray(users, dtype=np.int64), n_neg)
    neg = rng.integers(0, n_items, size=len(u), dtype=np.int64)
    todo = np.arange(len(u))
    for _ in range(max_rounds):
        keys = u[todo] * n_items + neg[todo]
        pos = np.searchsorted(pos_keys_sorted, keys)
        pos[pos >= len(pos_keys_sorted)] = 0
        clash = pos_keys_sorted[pos] == keys if len(pos_keys_sorted) else np.zeros(len(keys), bool)
        todo = todo[clash]
        if not len(todo):
            break
        neg[todo] = rng.integers(0, n_items, size=len(todo), dtype=np.int64)
    return neg if n_neg == 1 else neg.reshape(-1, n_neg)
