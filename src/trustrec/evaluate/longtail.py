"""Item-side fairness: head and tail items, exposure, per item first.

Conventions (each a parameter):

* **Head items** (:func:`head_items`): the top ``share`` (20 % by default, the long-tail
  sequential-recommendation convention of FairRecSys-style studies) of the catalogue by
  training frequency, ties broken by the lower item index; every other item is *tail*
  (items never seen in training are tail). The report names the convention.
* **Head / tail accuracy** (:func:`head_tail_metrics`): each user's ranking is the usual
  full-sort one (training items masked); the relevant set is the user's held-out items that
  are head (or tail) items. For leave-last-out this groups test cases by the popularity of
  the held-out item; a user with no held-out item of a group is not in that group's mean.
* **Exposure** of the top-``k`` lists (:func:`exposure_metrics`):
  ``coverage@k`` = distinct recommended items / catalogue; ``gini@k`` = Gini coefficient of
  how often each catalogue item is recommended (0: equal exposure, → 1: a few items take
  all); ``aplt@k`` (Abdollahpouri et al. 2019) = mean over users of the share of tail items
  in the list; ``arp@k`` = mean over users of the mean training frequency (interaction
  count) of the listed items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import dataset_csr, recommend_lists

#: Head share of the catalogue by training frequency (the convention the reports name).
HEAD_SHARE = 0.2


def head_items(train: Dataset, share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask over items: True for the ``round(share × n_items)`` (at least one)
    most frequent training items, ties by lower index; an item never seen in training is
    never head.

    Raises:
        ConfigError: ``share`` outside ``(0, 1)``.
    """
    if not 0 < float(share) < 1:
        raise ConfigError(f"head share must be in (0, 1), got {share!r}")
    counts = train.item_counts()
    n_head = max(1, int(np.floor(share * train.n_items + 0.5)))
    order = np.argsort(-counts, kind="stable")[:n_head]
    head = np.zeros(train.n_items, dtype=bool)
    head[order[counts[order] > 0]] = True
    return head


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 when all are equal or all zero)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(((2 * np.arange(1, n + 1) - n - 1) * c).sum() / (n * total))


def item_table(lists: np.ndarray, train: Dataset, head: np.ndarray) -> pd.DataFrame:
    """Per item: ``item``, ``train_count``, ``head`` and ``recommended`` (how many of
    ``lists`` hold it; ``-1`` padding ignored)."""
    flat = lists[lists >= 0]
    return pd.DataFrame({"item": np.arange(train.n_items), "train_count": train.item_counts(),
                         "head": head,
                         "recommended": np.bincount(flat, minlength=train.n_items)})


def exposure_metrics(lists: np.ndarray, train: Dataset, head: np.ndarray,
                     k: int | None = None) -> dict[str, float]:
    """``coverage@k``, ``gini@k``, ``aplt@k`` and ``arp@k`` of top-``k`` lists (see the
    module docstring); ``k`` names the metrics (default: the lists' width, which is
    smaller on a catalogue of fewer than ``k`` items)."""
    k = lists.shape[1] if k is None else int(k)
    real = lists >= 0
    items = np.where(real, lists, 0)
    n_listed = np.maximum(real.sum(1), 1)
    recommended = np.bincount(lists[real], minlength=train.n_items)
    tail_share = ((~head[items]) & real).sum(1) / n_listed
    popularity = np.where(real, train.item_counts()[items], 0).sum(1) / n_listed
    listed = real.any(1)
    return {f"coverage@{k}": float((recommended > 0).mean()),
            f"gini@{k}": gini(recommended),
            f"aplt@{k}": float(tail_share[listed].mean()) if listed.any() else float("nan"),
            f"arp@{k}": float(popularity[listed].mean()) if listed.any() else float("nan")}


def list_metrics(lists: np.ndarray, users: np.ndarray, truth: Dataset,
                 ks: tuple[int, ...]) -> pd.DataFrame:
    """NDCG@k and Recall@k of given top lists against ``truth``, per user, exactly as
    :func:`~trustrec.evaluate.ranking.evaluate_ranking` computes them from the same lists
    (truncated ideal DCG); users of ``users`` without a ``truth`` row are left out.

    Args:
        lists: ``(len(users), ≥ max(ks))`` top items, best first, ``-1`` padding.
        users: the user of each list row.
        truth: the held-out items.
        ks: cut-offs.
    """
    n_items = truth.n_items
    csr = dataset_csr(truth)
    n_rel = np.diff(csr.indptr)[users]
    keep = n_rel > 0
    lists, users, n_rel = lists[keep], users[keep], n_rel[keep]
    keys = np.sort(truth.pair_keys())
    query = np.where(lists >= 0, users[:, None] * n_items + lists, -1)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    hits = (keys[pos] == query) & (lists >= 0) if len(keys) else np.zeros(lists.shape, bool)
    disc = 1.0 / np.log2(np.arange(lists.shape[1]) + 2.0)
    cum = np.concatenate([[0.0], np.cumsum(disc)])
    out: dict[str, np.ndarray] = {"user": users}
    for k in ks:
        h = hits[:, :k]
        out[f"ndcg@{k}"] = (h @ disc[:k]) / cum[np.minimum(n_rel, min(k, lists.shape[1]))]
        out[f"recall@{k}"] = h.sum(1) / n_rel
    return pd.DataFrame(out)


def head_tail_metrics(model: object, train: Dataset, truth: Dataset, head: np.ndarray,
                      ks: tuple[int, ...] = (10, 20), history: Dataset | None = None,
                      lists: np.ndarray | None = None) -> pd.DataFrame:
    """Per user: ``ndcg@k`` and ``recall@k`` with suffix ``_head`` and ``_tail`` (NaN
    where the user has no held-out item of that group); see the module docstring.

    The model scores each held-out user once (:func:`recommend_lists`, or ``lists``
    given for ``np.unique(truth.users)`` with at least ``max(ks)`` columns); both groups
    are read from the same lists.
    """
    users = np.unique(truth.users)
    if lists is None:
        lists = recommend_lists(model, train, users, max(ks), history)
    parts = []
    for group, keep in (("head", head), ("tail", ~head)):
        table = list_metrics(lists, users, truth.select(keep[truth.items]), ks)
        parts.append(table.set_index("user").add_suffix(f"_{group}"))
    return pd.concat(parts, axis=1).sort_index().reset_index()


def longtail_report(model: object, train: Dataset, truth: Dataset, k: int = 10,
                    share: float = HEAD_SHARE, history: Dataset | None = None,
                    popularity: Dataset | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """The item side of a model in one call.

    Args:
        model: a Recommender or score function.
        train: the known items, masked (training data, or training + validation for
            the test).
        truth: held-out data (validation or test).
        k: cut-off of the lists and the accuracy metrics.
        share: head share (:func:`head_items`).
        history: score from these histories (sequential models).
        popularity: the data whose frequencies define the head and ``arp`` (default
            ``train``; the training split when ``train`` also holds validation rows).

    Returns:
        ``(per_user, per_item, summary)``: the head/tail accuracy table, the item table of
        the users' top-``k`` lists, and the means with the exposure metrics.
    """
    pop = train if popularity is None else popularity
    head = head_items(pop, share)
    lists = recommend_lists(model, train, np.unique(truth.users), k, history)
    per_user = head_tail_metrics(model, train, truth, head, (k,), history, lists)
    summary = {c: float(per_user[c].mean()) for c in per_user.columns if "@" in c}
    summary.update(exposure_metrics(lists, pop, head, k))
    summary["head_share"] = float(share)
    return per_user, item_table(lists, pop, head), summary
