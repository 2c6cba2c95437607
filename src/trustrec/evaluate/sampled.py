"""Where one item ranks: full-catalogue and sampled (1 + N negatives) ranks, random ties.

Many sequential-recommendation papers (SASRec, BERT4Rec, CREAT) rank each held-out item
among 100 sampled negatives, not the whole catalogue. Those figures are 3–6× higher than
full-ranking ones and, when ties are broken in the positive's favour (a popular public
SASRec port), higher still. This module offers that protocol only when asked, with the
ties broken **uniformly at random** and every metric column named ``sampled_...`` so that
no table can mistake it for a full ranking:

- :func:`ranks_of`: 0-based rank of one item per score row among the items not excluded,
  over the whole catalogue or among ``n_negatives`` items drawn uniformly without
  replacement from them; an item tied with ``t`` others takes a uniform position among
  them. Used for held-out items here and for an attack's target item
  (:mod:`trustrec.attack.metrics`).
- :func:`evaluate_sampled`: per held-out (user, item) row, ``sampled_hit@k``,
  ``sampled_ndcg@k`` (``1 / log2(rank + 2)`` inside the top k) and ``sampled_mrr@k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import _as_score_fn, _check_ks, dataset_csr, score_block

#: Negatives per held-out item in the papers' sampled protocol.
PAPER_NEGATIVES = 100


def ranks_of(scores: np.ndarray, positive: np.ndarray, excluded: sp.csr_matrix | None,
             gen: np.random.Generator, n_negatives: int | None = None) -> np.ndarray:
    """0-based rank of ``positive[r]`` in row ``r`` of ``scores``, ties at random.

    Args:
        scores: ``(n, n_items)`` scores.
        positive: ``(n,)`` item indices to rank (never treated as excluded).
        excluded: ``(n, n_items)`` items that are not candidates (a user's known items);
            None: every item is.
        gen: random generator (negatives and tie positions).
        n_negatives: None: rank among every candidate; else among this many candidates
            drawn uniformly without replacement (all of them where fewer are left).

    Returns:
        int64 ``(n,)``: the number of candidates scored above the item plus a uniform
        draw in ``[0, ties]``.
    """
    n, m = scores.shape
    rows = np.arange(n)
    positive = np.asarray(positive, dtype=np.int64)
    valid = np.ones((n, m), dtype=bool)
    if excluded is not None and excluded.nnz:
        valid[excluded.nonzero()] = False
    valid[rows, positive] = False
    if n_negatives is not None:
        if n_negatives < 1:
            raise ConfigError(f"n_negatives must be >= 1, got {n_negatives}")
        keys = gen.random((n, m))
        keys[~valid] = np.inf
        take = min(n_negatives, m)
        cand = np.argpartition(keys, take - 1, axis=1)[:, :take]
        chosen = np.zeros_like(valid)
        chosen[rows[:, None], cand] = valid[rows[:, None], cand]
        valid = chosen
    pos_s = scores[rows, positive][:, None]
    greater = ((scores > pos_s) & valid).sum(1)
    ties = ((scores == pos_s) & valid).sum(1)
    return (greater + gen.integers(0, ties + 1)).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int], prefix: str = ""
                       ) -> dict[str, np.ndarray]:
    """``{prefix}hit@k``, ``{prefix}ndcg@k`` and ``{prefix}mrr@k`` per rank (one relevant
    item per row)."""
    out: dict[str, np.ndarray] = {}
    for k in _check_ks(ks):
        inside = ranks < k
        out[f"{prefix}hit@{k}"] = inside.astype(np.float64)
        out[f"{prefix}ndcg@{k}"] = np.where(inside, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"{prefix}mrr@{k}"] = np.where(inside, 1.0 / (ranks + 1.0), 0.0)
    return out


def evaluate_sampled(model: object, train: Dataset, truth: Dataset,
                     ks: Sequence[int] = (10,), n_negatives: int = PAPER_NEGATIVES,
                     seed: int = 0, history: Dataset | None = None,
                     chunk_size: int = 1024) -> pd.DataFrame:
    """The sampled protocol: each held-out item against ``n_negatives`` random items.

    Args:
        model: a Recommender (``score``) or a score function.
        train: the users' known items: never drawn as negatives.
        truth: held-out (user, item) rows; each is ranked once, and a user's other
            held-out items are not drawn as its negatives either.
        ks: cut-offs.
        n_negatives: negatives per held-out item (100 in the papers).
        seed: seeds the negatives and the tie draws.
        history: score users from their histories in this Dataset (sequential models,
            as :func:`~trustrec.evaluate.ranking.evaluate_ranking`).
        chunk_size: users scored at once.

    Returns:
        DataFrame, one row per held-out (user, item) pair sorted by user: ``user``,
        ``item``, ``sampled_rank`` and ``sampled_{hit,ndcg,mrr}@k``.

    Raises:
        ConfigError: bad ``ks``, ``n_negatives`` or ``chunk_size``.
        ValueError: ``train``, ``truth`` and ``history`` in different id spaces.
    """
    ks = _check_ks(ks)
    if n_negatives < 1 or chunk_size < 1:
        raise ConfigError(f"n_negatives and chunk_size must be >= 1, got {n_negatives} "
                          f"and {chunk_size}")
    for other in (truth, history):
        if other is not None and (other.n_users, other.n_items) != (train.n_users,
                                                                    train.n_items):
            raise ValueError(f"{other.name!r} ({other.n_users}×{other.n_items}) is not in "
                             f"train's id space ({train.n_users}×{train.n_items})")
    score = _as_score_fn(model)
    gen = np.random.default_rng(seed)
    known = ((dataset_csr(train) + dataset_csr(truth)) > 0).tocsr()
    truth_csr = dataset_csr(truth)
    histories = None if history is None else Query.from_dataset(history)
    users = np.flatnonzero(np.diff(truth_csr.indptr) > 0)
    parts_u, parts_i, parts_r = [], [], []
    for start in range(0, len(users), chunk_size):
        rows = users[start:start + chunk_size]
        asked = None if histories is None else histories.subset(rows)
        s = score_block(score, rows, train.n_items, asked)
        sub = truth_csr[rows]
        per = np.diff(sub.indptr)
        local = np.repeat(np.arange(len(rows)), per)
        ranks = ranks_of(s[local], sub.indices, known[rows[local]], gen, n_negatives)
        parts_u.append(rows[local])
        parts_i.append(sub.indices.astype(np.int64))
        parts_r.append(ranks)
    ranks = np.concatenate(parts_r) if parts_r else np.zeros(0, dtype=np.int64)
    table: dict[str, np.ndarray] = {
        "user": np.concatenate(parts_u) if parts_u else np.zeros(0, dtype=np.int64),
        "item": np.concatenate(parts_i) if parts_i else np.zeros(0, dtype=np.int64),
        "sampled_rank": ranks}
    table.update(metrics_from_ranks(ranks, ks, "sampled_"))
    return pd.DataFrame(table)
