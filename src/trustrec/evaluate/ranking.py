"""Full-sort top-k ranking metrics, per user first.

Protocol: for each evaluated user, every item is ranked except the user's training items
(and any other items passed in ``exclude``); the relevant items are the user's rows in
``truth``. Metrics at cut-off k, with ``rel`` the relevant set and ``hits`` the top-k items
that are relevant:

- ``ndcg@k``  = Σ_{p<k, item p relevant} 1/log2(p+2) / Σ_{j<min(|rel|,k)} 1/log2(j+2)
- ``recall@k`` = |hits| / |rel|
- ``precision@k`` = |hits| / k (the requested k, even when the catalogue is smaller)
- ``hit@k`` = 1 if |hits| > 0 (HitRate: its mean is the share of users with a hit)
- ``mrr@k`` = 1/(rank of the first hit), 0 without a hit
- ``f1@k`` = 2|hits| / (|rel| + k), Li et al.'s per-user F1 (WWW 2021, the form their
  user-oriented fairness code computes; the harmonic mean of precision@k and recall@k)

Ties in score are broken by the lower item index, so results do not depend on the top-k
kernel. Excluded items (and items a model scores ``-inf``) are never recommended: when a
user has fewer than k rankable items the list is simply shorter. Scores are computed in
chunks of users so memory stays bounded on large catalogues.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.errors import ConfigError

ScoreFn = Callable[[np.ndarray], np.ndarray]
METRICS = ("ndcg", "recall", "hit", "mrr", "precision", "f1")

# Binary CSR of a Dataset, built once per (immutable) Dataset object: evaluation runs every
# epoch during early stopping and rebuilding the training matrix each time dominated it.
_CSR_CACHE: weakref.WeakKeyDictionary[Dataset, sp.csr_matrix] = weakref.WeakKeyDictionary()


def _as_score_fn(model: object) -> ScoreFn:
    return model if callable(model) and not hasattr(model, "score") else model.score  # type: ignore[union-attr]


def dataset_csr(ds: Dataset) -> sp.csr_matrix:
    """The binary user × item CSR of ``ds`` (sorted indices), cached per Dataset object.

    The returned matrix is shared, so its arrays are read-only (copy it to modify).
    """
    m = _CSR_CACHE.get(ds)
    if m is None:
        m = ds.to_csr()
        for arr in (m.data, m.indices, m.indptr):
            arr.setflags(write=False)
        _CSR_CACHE[ds] = m
    return m


def as_mask(exclude: Dataset | sp.spmatrix | sp.sparray | None, n_users: int,
            n_items: int) -> sp.csr_matrix | None:
    """A user × item exclusion matrix from a Dataset or a sparse matrix (shape checked)."""
    if exclude is None:
        return None
    m = dataset_csr(exclude) if isinstance(exclude, Dataset) else sp.csr_matrix(exclude)
    if m.shape != (n_users, n_items):
        raise ValueError(f"exclusion matrix has shape {m.shape}, expected "
                         f"({n_users}, {n_items}) users × items")
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return m


def score_block(score: ScoreFn, rows: np.ndarray, n_items: int,
                query: Query | None = None) -> np.ndarray:
    """``score(rows)`` (or ``score(query)``, a query of those users) as a new float32 array
    (safe to modify), checked for shape and NaN."""
    s = score(rows if query is None else query)
    if isinstance(s, torch.Tensor):
        s = s.detach().cpu().numpy()
    s = np.array(s, dtype=np.float32, copy=True)
    if s.shape != (len(rows), n_items):
        raise ValueError(f"score(users) returned shape {s.shape} for {len(rows)} users; "
                         f"expected ({len(rows)}, {n_items})")
    if np.isnan(s).any():
        bad = rows[np.flatnonzero(np.isnan(s).any(1))[:5]]
        raise ValueError(f"score(users) returned NaN for user index(es) {bad.tolist()}")
    return s


def _topk(scores: np.ndarray, exclude: sp.csr_matrix | None, rows: np.ndarray,
          k: int, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-k indices and their scores (``-inf`` marks an excluded slot), ties → lower index."""
    a = np.array(scores, dtype=np.float32, copy=True) if copy else np.asarray(scores, np.float32)
    n, m = a.shape
    if exclude is not None and exclude.nnz:
        sub = exclude[rows]
        flat = (np.repeat(np.arange(n, dtype=np.int64) * m, np.diff(sub.indptr))
                + sub.indices)
        a.reshape(-1)[flat] = -np.inf
    k = min(k, m)
    kk = min(k + 1, m)  # one extra column reveals ties across the cut-off
    vals_t, idx_t = torch.topk(torch.from_numpy(a), kk, dim=1, sorted=True)
    vals, idx = vals_t.numpy(), idx_t.numpy()
    if kk > k:
        # A tie at the cut-off: which tied items make the list depends on the kernel, so
        # re-rank those rows with a stable full sort (rare for trained models).
        cut = (vals[:, k] == vals[:, k - 1]) & (vals[:, k - 1] > -np.inf)
        vals, idx = vals[:, :k], idx[:, :k]
        if cut.any():
            r = np.flatnonzero(cut)
            order = np.argsort(-a[r], axis=1, kind="stable")[:, :k]
            idx = idx.copy()
            vals = vals.copy()
            idx[r] = order
            vals[r] = np.take_along_axis(a[r], order, axis=1)
    if k > 1 and (vals[:, 1:] == vals[:, :-1]).any():
        order = np.lexsort((idx, -vals), axis=1)  # equal scores inside the list: by index
        idx = np.take_along_axis(idx, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
    return idx.astype(np.int64, copy=False), vals


def rank_topk(scores: np.ndarray | torch.Tensor, exclude: sp.csr_matrix | None,
              rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top-``k`` items per row after masking excluded items to -inf.

    Args:
        scores: ``(len(rows), n_items)`` scores (not modified).
        exclude: user × item matrix of items never to recommend (e.g. training items).
        rows: user indices of the score rows (rows of ``exclude`` to apply).
        k: cut-off; at most ``n_items`` columns are returned.

    Returns:
        int64 array ``(len(rows), min(k, n_items))``, best first; ties broken by lower item
        index. Where a user has fewer than k rankable items the tail holds excluded items
        (use :func:`evaluate_ranking`, which ignores them, for metrics).
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    rows = np.asarray(rows, dtype=np.int64)
    if exclude is not None and exclude.format != "csr":
        exclude = sp.csr_matrix(exclude)
    return _topk(np.asarray(scores), exclude, rows, k)[0]


#: Ideal-DCG conventions of NDCG (see :func:`evaluate_ranking`).
NDCG_IDEALS = ("truncated", "untruncated")


def _check_ks(ks: Sequence[int]) -> list[int]:
    try:
        out = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise ConfigError(f"cut-offs ks must be positive integers, got {ks!r}") from None
    if not out or out[0] < 1:
        raise ConfigError(f"cut-offs ks must be positive integers, got {ks!r}")
    return out


def evaluate_ranking(
    model: object,
    train: Dataset,
    truth: Dataset,
    ks: Sequence[int] = (10, 20),
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | Dataset | None = None,
    chunk_size: int = 2048,
    ndcg_ideal: str = "truncated",
    history: Dataset | None = None,
) -> pd.DataFrame:
    """Per-user ranking metrics.

    Args:
        model: a Recommender (anything with ``score(users)``) or a score function.
        train: the user's known items; they are removed from the ranking.
        truth: the held-out relevant items (validation or test split).
        ks: cut-offs.
        users: users to evaluate; default every user with at least one ``truth`` row.
            Users without a relevant item are dropped.
        exclude: extra user × item mask (sparse matrix or Dataset) to remove from the
            ranking.
        chunk_size: users scored at once.
        ndcg_ideal: the ideal DCG that normalises NDCG@k: ``"truncated"`` (default, the
            standard definition: the DCG of ``min(n_relevant, k)`` hits at the top) or
            ``"untruncated"`` (CURE4Rec's released code: the DCG of all ``n_relevant``
            items, so a user with more than k relevant items can never reach 1).
        history: score each user from its item history in ``history`` (a
            :class:`~trustrec.data.query.Query`, oldest first), as a sequential model
            needs, e.g. ``split.known()`` for the leave-last-out test; None: the model
            gets user indices (and uses what it learned at fit).

    Returns:
        DataFrame, one row per user sorted by user: ``user``, ``n_relevant``, and
        ``{metric}@{k}`` for every metric in :data:`METRICS` and k in ``ks``.

    Raises:
        ConfigError: bad ``ks`` or ``chunk_size``.
        ValueError: mismatched id spaces (of ``truth`` or ``history``), user indices out
            of range, or a model returning the wrong shape or NaN scores.
    """
    score = _as_score_fn(model)
    ks = _check_ks(ks)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if ndcg_ideal not in NDCG_IDEALS:
        raise ConfigError(f"ndcg_ideal must be one of {', '.join(NDCG_IDEALS)}, got "
                          f"{ndcg_ideal!r}")
    if (train.n_users, train.n_items) != (truth.n_users, truth.n_items):
        raise ValueError(f"train {train.name!r} ({train.n_users}×{train.n_items}) and truth "
                         f"{truth.name!r} ({truth.n_users}×{truth.n_items}) have different "
                         "id spaces")
    if history is not None and (history.n_users, history.n_items) != (train.n_users,
                                                                       train.n_items):
        raise ValueError(f"history {history.name!r} ({history.n_users}×{history.n_items}) "
                         f"is not in train's id space ({train.n_users}×{train.n_items})")
    histories = None if history is None else Query.from_dataset(history)  # sorted once
    n_items = train.n_items
    truth_csr = dataset_csr(truth)
    n_rel_all = np.diff(truth_csr.indptr)
    if users is None:
        users = np.flatnonzero(n_rel_all > 0)
    else:
        users = np.unique(np.asarray(users, dtype=np.int64))
        if len(users) and (users[0] < 0 or users[-1] >= train.n_users):
            bad = users[(users < 0) | (users >= train.n_users)][0]
            raise ValueError(f"user index {bad} out of range [0, {train.n_users})")
        users = users[n_rel_all[users] > 0]
    mask = dataset_csr(train)
    extra = as_mask(exclude, train.n_users, n_items)
    if extra is not None:
        mask = ((mask + extra) > 0).astype(np.float32).tocsr()
        mask.sort_indices()
    kmax = min(ks[-1], n_items)
    n_disc = max(kmax, int(n_rel_all.max(initial=0)))
    disc = 1.0 / np.log2(np.arange(n_disc) + 2.0)
    cum_disc = np.concatenate([[0.0], np.cumsum(disc)])
    untruncated = ndcg_ideal == "untruncated"
    out: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for m in METRICS for k in ks}
    for start in range(0, len(users), chunk_size):
        rows = users[start:start + chunk_size]
        asked = None if histories is None else histories.subset(rows)  # users = indices
        top, vals = _topk(score_block(score, rows, n_items, asked), mask, rows, kmax,
                          copy=False)
        tsub = truth_csr[rows]
        # Relevant-item lookup without densifying the catalogue: sorted pair keys.
        keys = (np.repeat(np.arange(len(rows)), np.diff(tsub.indptr)).astype(np.int64)
                * n_items + tsub.indices)
        qkeys = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + top
        pos = np.searchsorted(keys, qkeys)
        pos[pos >= len(keys)] = 0
        # keys are sorted (rows ascending, csr indices sorted); -inf slots are not recommended
        hits = (keys[pos] == qkeys) & (vals > -np.inf)
        n_rel = n_rel_all[rows]
        first = np.where(hits.any(1), hits.argmax(1), kmax)
        for k in ks:
            h = hits[:, :k]
            nh = h.sum(1)
            dcg = h @ disc[:k]
            idcg = cum_disc[n_rel if untruncated else np.minimum(n_rel, min(k, kmax))]
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"recall@{k}"].append(nh / n_rel)
            out[f"precision@{k}"].append(nh / k)
            out[f"hit@{k}"].append((nh > 0).astype(np.float64))
            out[f"mrr@{k}"].append(np.where(first < k, 1.0 / (first + 1.0), 0.0))
            out[f"f1@{k}"].append(2.0 * nh / (n_rel + k))
    table = {"user": users, "n_relevant": n_rel_all[users]}
    for name, parts in out.items():
        table[name] = np.concatenate(parts) if parts else np.zeros(0)
    return pd.DataFrame(table)


def recommend_lists(model: object, train: Dataset, users: np.ndarray, k: int,
                    history: Dataset | None = None, chunk_size: int = 2048,
                    with_scores: bool = False
                    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Each user's top-``k`` list, training items masked, as :func:`evaluate_ranking` ranks.

    Args:
        model: a Recommender or a score function.
        train: the users' known items (never recommended).
        users: user indices.
        k: list length.
        history: score from these histories (sequential models), as in
            :func:`evaluate_ranking`.
        chunk_size: users scored at once.
        with_scores: also return the listed items' scores.

    Returns:
        int64 ``(len(users), min(k, n_items))``, best first; ``-1`` pads the lists of users
        with fewer than ``k`` rankable items. With ``with_scores``, a pair ``(lists,
        scores)``, the scores float32 of the same shape (``-inf`` at a pad).
    """
    score = _as_score_fn(model)
    users = np.asarray(users, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= train.n_users):
        raise ValueError(f"user index out of range [0, {train.n_users})")
    histories = None if history is None else Query.from_dataset(history)
    mask = dataset_csr(train)
    kk = min(int(k), train.n_items)
    out = np.full((len(users), kk), -1, dtype=np.int64)
    out_scores = np.full((len(users), kk), -np.inf, dtype=np.float32)
    for start in range(0, len(users), chunk_size):
        rows = users[start:start + chunk_size]
        asked = None if histories is None else histories.subset(rows)
        top, vals = _topk(score_block(score, rows, train.n_items, asked), mask, rows, kk,
                          copy=False)
        out[start:start + len(rows)] = np.where(vals > -np.inf, top, -1)
        out_scores[start:start + len(rows)] = vals
    return (out, out_scores) if with_scores else out


def summarize(per_user: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric column of a per-user table (``user``/``n_relevant`` skipped)."""
    cols = [c for c in per_user.columns if "@" in c]
    return {c: float(per_user[c].mean()) if len(per_user) else float("nan") for c in cols}


def ndcg_at(model: object, train: Dataset, truth: Dataset, k: int = 20) -> float:
    """Mean NDCG@k over users with a relevant item (the early-stopping criterion)."""
    return float(evaluate_ranking(model, train, truth, ks=(k,))[f"ndcg@{k}"].mean())
