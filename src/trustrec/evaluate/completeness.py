"""Completeness of forgetting: how far an unlearned model is from the retrained one.

The retrained model (trained from scratch on the remaining data) is the reference for exact
forgetting. Three views, all per user or per forgotten row first:

- :func:`topk_overlap`: share of the top-k lists two models have in common;
- :func:`rank_correlation`: Spearman correlation of the two models' score vectors;
- :func:`forgotten_item_percentile`: where a forgotten item sits in its user's ranking
  (0 = top, 1 = bottom). A model that still remembers ranks forgotten items high, i.e. a
  lower percentile than the retrained model gives them.

:func:`agreement_report` combines them into the summary stored with each benchmark cell.

Both models rank the same candidates: every item except the user's items in the remaining
training data (the retrained model's training set). A score source is a Recommender or an
unlearner (anything with ``score(users)``) or a plain score function.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import _as_score_fn, _topk, as_mask, dataset_csr, score_block
from trustrec.seeding import rng

# Elements (users × items) handled at once by the chunked routines: bounds memory on large
# catalogues while keeping ML-100K (943 × 1,682) in one or two blocks.
_BLOCK_ELEMENTS = 1 << 21


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0 or np.isnan(x).all():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(x))


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _user_array(users: object, n_users: int | None, what: str = "users") -> np.ndarray:
    u = np.asarray(users if users is not None else [], dtype=np.int64).ravel()
    if len(u) and u.min() < 0:
        raise ValueError(f"negative user index {u.min()} in {what}")
    if n_users is not None and len(u) and u.max() >= n_users:
        raise ValueError(f"user index {u.max()} in {what} out of range [0, {n_users})")
    return u


def _chunk_rows(n_items: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(n_items, 1))


def _dense_valid(mask: sp.csr_matrix | None, rows: np.ndarray, n_items: int) -> np.ndarray:
    """``(len(rows), n_items)`` bool: True where the item is a ranking candidate."""
    valid = np.ones((len(rows), n_items), dtype=bool)
    if mask is not None and mask.nnz:
        sub = mask[rows]
        flat = (np.repeat(np.arange(len(rows), dtype=np.int64) * n_items, np.diff(sub.indptr))
                + sub.indices)
        valid.reshape(-1)[flat] = False
    return valid


def _overlap_block(sa: np.ndarray, sb: np.ndarray, mask: sp.csr_matrix | None,
                   rows: np.ndarray, k: int) -> np.ndarray:
    n, m = sa.shape
    ta, va = _topk(sa, mask, rows, k, copy=True)
    tb, vb = _topk(sb, mask, rows, k, copy=True)
    # Empty slots (fewer candidates than k) never match: -1 in a, -2 in b.
    ta = np.where(va > -np.inf, ta, -1)
    tb = np.sort(np.where(vb > -np.inf, tb, -2), axis=1)
    width = m + 2
    off = np.arange(n, dtype=np.int64)[:, None] * width
    keys = (off + tb + 2).ravel()  # sorted: rows ascending, each row sorted
    q = off + ta + 2
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    common = (keys[pos] == q).sum(1)
    n_cand = m - (np.diff(mask[rows].indptr) if mask is not None else 0)
    denom = np.minimum(k, n_cand).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, common / denom, np.nan)


def _average_ranks(s: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise 0-based ranks of the valid entries (ties share their mean rank); 0 elsewhere."""
    n, m = s.shape
    x = np.where(valid, s, np.float32(np.nan))
    order = np.argsort(x, axis=1, kind="stable")  # NaN (invalid) entries sort last
    xs = np.take_along_axis(x, order, axis=1)
    new = np.ones((n, m), dtype=bool)
    new[:, 1:] = xs[:, 1:] != xs[:, :-1]  # NaN != NaN: invalid entries stay singletons
    gid = np.cumsum(new.ravel()) - 1  # tie groups never span rows (new[:, 0] is True)
    pos = np.tile(np.arange(m, dtype=np.float64), n)
    mean_pos = np.bincount(gid, weights=pos) / np.bincount(gid)
    ranks = np.empty((n, m), dtype=np.float64)
    np.put_along_axis(ranks, order, mean_pos[gid].reshape(n, m), axis=1)
    ranks[~valid] = 0.0
    return ranks


def _spearman_block(sa: np.ndarray, sb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n_valid = valid.sum(1)
    ra = _average_ranks(sa, valid)
    rb = _average_ranks(sb, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (n_valid - 1) / 2.0  # average ranks of 0..n-1 always sum to n(n-1)/2
        ca = np.where(valid, ra - mean[:, None], 0.0)
        cb = np.where(valid, rb - mean[:, None], 0.0)
        num = (ca * cb).sum(1)
        den = np.sqrt((ca * ca).sum(1) * (cb * cb).sum(1))
        return np.where(den > 0, num / den, np.nan)


class _Pair:
    """Two score sources scored on the same user blocks."""

    def __init__(self, a: object, b: object, n_items: int | None) -> None:
        self.fa, self.fb = _as_score_fn(a), _as_score_fn(b)
        self.n_items = n_items

    def scores(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.n_items is None:  # learn the catalogue size from the first block
            self.n_items = int(np.shape(self.fa(rows[:1]))[1])
        return (score_block(self.fa, rows, self.n_items),
                score_block(self.fb, rows, self.n_items))


def _blocks(users: np.ndarray, n_items: int | None, chunk_size: int | None):
    step = _chunk_rows(n_items or 4096) if chunk_size is None else int(chunk_size)
    if step < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, len(users), step):
        yield users[start:start + step]


def topk_overlap(a: object, b: object, train: Dataset, users: np.ndarray, k: int = 20,
                 chunk_size: int | None = None) -> np.ndarray:
    """Per-user share of common items in the two models' top-k lists.

    Both lists rank every item except the user's ``train`` items. The share is
    ``|top_k(a) ∩ top_k(b)| / min(k, n_candidates)``, so two identical models give 1 even
    when a user has fewer than k candidate items; NaN when a user has no candidate.

    Args:
        a: first score source (``score(users)`` or a score function).
        b: second score source (e.g. the retrained model).
        train: items to mask for both (the retrained model's training data).
        users: user indices, in the order of the result.
        k: list length.
        chunk_size: users scored at once (default: bounded by catalogue size).

    Returns:
        float64 array aligned with ``users``.
    """
    if int(k) < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    users = _user_array(users, train.n_users)
    mask = dataset_csr(train)
    pair = _Pair(a, b, train.n_items)
    parts = [_overlap_block(*pair.scores(rows), mask, rows, int(k))
             for rows in _blocks(users, train.n_items, chunk_size)]
    return _cat(parts)


def rank_correlation(a: object, b: object, users: np.ndarray,
                     exclude: Dataset | sp.spmatrix | None = None,
                     chunk_size: int | None = None) -> np.ndarray:
    """Per-user Spearman correlation of two models' scores over the user's candidate items.

    Vectorised per block of users: one stable argsort per score matrix gives ordinal
    positions; tied scores share their mean position (the usual Spearman treatment), and
    the correlation is Pearson's on those ranks over the user's non-excluded items.

    Args:
        a: first score source.
        b: second score source.
        users: user indices, in the order of the result.
        exclude: user × item items to leave out of the comparison (Dataset or sparse
            matrix), normally the remaining training data; None compares every item.
        chunk_size: users scored at once (default: bounded by catalogue size).

    Returns:
        float64 array aligned with ``users``; 1 for identical rankings, −1 for reversed
        ones, NaN where a model's scores are constant over the candidates or a user has
        fewer than two candidate items.
    """
    if isinstance(exclude, Dataset):
        n_users, n_items = exclude.n_users, exclude.n_items
    elif exclude is not None:
        n_users, n_items = exclude.shape
    else:
        n_users, n_items = None, None
    users = _user_array(users, n_users)
    pair = _Pair(a, b, n_items)
    mask = as_mask(exclude, n_users, n_items) if exclude is not None else None
    parts = []
    for rows in _blocks(users, n_items, chunk_size):
        sa, sb = pair.scores(rows)
        parts.append(_spearman_block(sa, sb, _dense_valid(mask, rows, sa.shape[1])))
    return _cat(parts)


def forgotten_item_percentile(model: object, forgotten: Dataset, train_remaining: Dataset,
                              chunk_size: int | None = None) -> np.ndarray:
    """Percentile rank of each forgotten item in its user's ranking (0 = top, 1 = bottom).

    For a forgotten row ``(u, i)`` the comparison set is every item that is neither in
    ``u``'s remaining training data nor among ``u``'s forgotten items; each forgotten row is
    thus placed on its own among the items ``u`` is not known to have, independently of
    the user's other forgotten rows. The percentile is
    ``(#{j: s_j > s_i} + ½·#{j: s_j = s_i}) / #comparison items``: 0 when the model puts the
    item above every other candidate, 1 below all of them, about 0.5 for a model that has no
    information about it. NaN when the user has no other candidate item.

    Args:
        model: score source (the unlearned model, or the retrained one for reference).
        forgotten: the removed rows (same id space as ``train_remaining``).
        train_remaining: the training data after removal.
        chunk_size: forgotten rows compared at once (default: bounded by catalogue size).

    Returns:
        float64 array, one value per row of ``forgotten`` in its row order.
    """
    if (forgotten.n_users, forgotten.n_items) != (train_remaining.n_users,
                                                  train_remaining.n_items):
        raise ValueError(f"forgotten rows {forgotten.name!r} and remaining data "
                         f"{train_remaining.name!r} have different id spaces")
    n = forgotten.n_interactions
    out = np.full(n, np.nan)
    if n == 0:
        return out
    m = train_remaining.n_items
    score = _as_score_fn(model)
    mask = dataset_csr(train_remaining)
    forg = dataset_csr(forgotten)
    order = np.argsort(forgotten.users, kind="stable")
    f_users = forgotten.users[order].astype(np.int64)
    f_items = forgotten.items[order].astype(np.int64)
    step = _chunk_rows(m) if chunk_size is None else int(chunk_size)
    if step < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n, step):
        bu, bi = f_users[start:start + step], f_items[start:start + step]
        rows, local = np.unique(bu, return_inverse=True)
        s = score_block(score, rows, m)
        valid = _dense_valid(mask, rows, m) & _dense_valid(forg, rows, m)
        si = s[local, bi]
        g = s[local]
        v = valid[local]
        above = (g > si[:, None]) & v
        tied = (g == si[:, None]) & v
        n_cand = v.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = (above.sum(1) + 0.5 * tied.sum(1)) / n_cand
        out[order[start:start + step]] = np.where(n_cand > 0, pct, np.nan)
    return out


def agreement_report(model: object, retrained: object, train_remaining: Dataset,
                     forgotten_rows: Dataset, retained_users: np.ndarray, k: int = 20,
                     max_users: int | None = None, seed: int = 0) -> dict[str, float]:
    """How close an unlearned model is to the retrained reference.

    Args:
        model: the unlearned model (score source).
        retrained: the model retrained from scratch on ``train_remaining``.
        train_remaining: the training data after the forget request (masked for both).
        forgotten_rows: the removed training rows.
        retained_users: users none of whose rows were forgotten (the ones the unlearned
            model should still serve as before).
        k: top-k length of the overlap metrics.
        max_users: if set, compare at most this many retained users, drawn without
            replacement with ``rng(seed, "agreement", "retained")`` (default: all).
        seed: root seed of that draw.

    Returns:
        ``overlap@{k}_vs_retrain`` (mean over retained users), ``rank_corr_vs_retrain``
        (mean Spearman over retained users), ``forgotten_overlap@{k}_vs_retrain`` (mean over
        the users that had rows forgotten), ``forgotten_item_pct`` and
        ``forgotten_item_pct_retrain`` (mean percentile of the forgotten rows under each
        model) and ``forgotten_item_pct_gap`` (model − retrained: about 0 means as
        forgotten as after retraining; negative means the model still ranks forgotten
        items higher). Means skip NaN entries; an empty set gives NaN.
    """
    k = int(k)
    if k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}")
    retained = np.unique(_user_array(retained_users, train_remaining.n_users,
                                     "retained_users"))
    if max_users is not None:
        if int(max_users) < 1:
            raise ConfigError(f"max_users must be a positive integer, got {max_users!r}")
        if len(retained) > int(max_users):
            pick = rng(seed, "agreement", "retained").choice(len(retained), int(max_users),
                                                             replace=False)
            retained = retained[np.sort(pick)]
    mask = dataset_csr(train_remaining)
    m = train_remaining.n_items
    pair = _Pair(model, retrained, m)
    overlap, corr = [], []
    for rows in _blocks(retained, m, None):
        sa, sb = pair.scores(rows)
        overlap.append(_overlap_block(sa, sb, mask, rows, k))
        corr.append(_spearman_block(sa, sb, _dense_valid(mask, rows, m)))
    f_users = np.unique(forgotten_rows.users).astype(np.int64)
    f_overlap = topk_overlap(model, retrained, train_remaining, f_users, k)
    pct = forgotten_item_percentile(model, forgotten_rows, train_remaining)
    pct_re = forgotten_item_percentile(retrained, forgotten_rows, train_remaining)
    mean_pct, mean_pct_re = _nanmean(pct), _nanmean(pct_re)
    return {
        f"overlap@{k}_vs_retrain": _nanmean(_cat(overlap)),
        "rank_corr_vs_retrain": _nanmean(_cat(corr)),
        f"forgotten_overlap@{k}_vs_retrain": _nanmean(f_overlap),
        "forgotten_item_pct": mean_pct,
        "forgotten_item_pct_retrain": mean_pct_re,
        "forgotten_item_pct_gap": mean_pct - mean_pct_re,
    }
