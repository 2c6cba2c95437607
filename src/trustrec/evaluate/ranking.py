"""Full-sort top-k ranking metrics, per user first.

Protocol: for each evaluated user, every item is ranked except the user's training items
(and any other items passed in ``exclude``); the relevant items are the user's rows in
``truth``. Metrics at cut-off k, with ``rel`` the relevant set and ``hits`` the top-k items
that are relevant:

- ``ndcg@k``  = Σ_{p<k, item p relevant} 1/log2(p+2) / Σ_{j<min(|rel|,k)} 1/log2(j+2)
- ``recall@k`` = |hits| / |rel|
- ``precision@k`` = |hits| / k
- ``hit@k`` = 1 if |hits| > 0 (HitRate: its mean is the share of users with a hit)
- ``mrr@k`` = 1/(rank of the first hit), 0 without a hit

Scores are computed in chunks of users so memory stays bounded on large catalogues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from trustrec.data.dataset import Dataset

ScoreFn = Callable[[np.ndarray], np.ndarray]
METRICS = ("ndcg", "recall", "hit", "mrr", "precision")


def _as_score_fn(model: object) -> ScoreFn:
    return model if callable(model) and not hasattr(model, "score") else model.score  # type: ignore[union-attr]


def rank_topk(scores: np.ndarray | torch.Tensor, exclude: sp.csr_matrix | None,
              rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top-``k`` items per row after masking excluded items to -inf.

    Args:
        scores: ``(len(rows), n_items)`` scores.
        exclude: user × item matrix of items never to recommend (e.g. training items).
        rows: user indices of the score rows (rows of ``exclude`` to apply).
        k: cut-off.

    Returns:
        int64 array ``(len(rows), k)``, best first; ties broken by lower item index.
    """
    s = torch.as_tensor(np.asarray(scores, dtype=np.float32)).clone()
    if exclude is not None and exclude.nnz:
        sub = exclude[rows]
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        s[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = -torch.inf
    k = min(k, s.shape[1])
    return torch.topk(s, k, dim=1, sorted=True).indices.numpy()


def evaluate_ranking(
    model: object,
    train: Dataset,
    truth: Dataset,
    ks: Sequence[int] = (10, 20),
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    chunk_size: int = 2048,
) -> pd.DataFrame:
    """Per-user ranking metrics.

    Args:
        model: a Recommender (anything with ``score(users)``) or a score function.
        train: the user's known items; they are removed from the ranking.
        truth: the held-out relevant items (validation or test split).
        ks: cut-offs.
        users: users to evaluate; default every user with at least one ``truth`` row.
            Users without a relevant item are dropped.
        exclude: extra user × item mask to remove from the ranking.
        chunk_size: users scored at once.

    Returns:
        DataFrame, one row per user sorted by user: ``user``, ``n_relevant``, and
        ``{metric}@{k}`` for every metric in :data:`METRICS` and k in ``ks``.
    """
    score = _as_score_fn(model)
    truth_csr = truth.to_csr()
    n_rel_all = np.diff(truth_csr.indptr)
    if users is None:
        users = np.flatnonzero(n_rel_all > 0)
    else:
        users = np.unique(np.asarray(users, dtype=np.int64))
        users = users[n_rel_all[users] > 0]
    mask = train.to_csr()
    if exclude is not None:
        mask = ((mask + exclude) > 0).astype(np.float32).tocsr()
    ks = sorted({int(k) for k in ks})
    kmax = min(max(ks), train.n_items)
    disc = 1.0 / np.log2(np.arange(kmax) + 2.0)
    cum_disc = np.concatenate([[0.0], np.cumsum(disc)])
    out: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for m in METRICS for k in ks}
    for start in range(0, len(users), chunk_size):
        rows = users[start:start + chunk_size]
        top = rank_topk(score(rows), mask, rows, kmax)
        tsub = truth_csr[rows]
        # Relevant-item lookup without densifying the catalogue: sorted pair keys.
        keys = (np.repeat(np.arange(len(rows)), np.diff(tsub.indptr)).astype(np.int64)
                * train.n_items + tsub.indices)
        qkeys = np.arange(len(rows), dtype=np.int64)[:, None] * train.n_items + top
        pos = np.searchsorted(keys, qkeys)
        pos[pos >= len(keys)] = 0
        hits = keys[pos] == qkeys  # (n, kmax), keys are sorted per row (csr sorted indices)
        n_rel = n_rel_all[rows]
        first = np.where(hits.any(1), hits.argmax(1), kmax)
        for k in ks:
            h = hits[:, :k]
            nh = h.sum(1)
            dcg = h @ disc[:k]
            idcg = cum_disc[np.minimum(n_rel, k)]
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"recall@{k}"].append(nh / n_rel)
            out[f"precision@{k}"].append(nh / k)
            out[f"hit@{k}"].append((nh > 0).astype(np.float64))
            out[f"mrr@{k}"].append(np.where(first < k, 1.0 / (first + 1.0), 0.0))
    table = {"user": users, "n_relevant": n_rel_all[users]}
    for name, parts in out.items():
        table[name] = np.concatenate(parts) if parts else np.zeros(0)
    return pd.DataFrame(table)


def summarize(per_user: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric column of a per-user table (``user``/``n_relevant`` skipped)."""
    cols = [c for c in per_user.columns if "@" in c]
    return {c: float(per_user[c].mean()) if len(per_user) else float("nan") for c in cols}


def ndcg_at(model: object, train: Dataset, truth: Dataset, k: int = 20) -> float:
    """Mean NDCG@k over users with a relevant item (the early-stopping criterion)."""
    return float(evaluate_ranking(model, train, truth, ks=(k,))[f"ndcg@{k}"].mean())
