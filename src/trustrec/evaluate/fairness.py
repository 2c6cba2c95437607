"""User-group and shard fairness of a recommender (CURE4Rec's A-IGF and shardGF).

- **Activity groups**: users ranked by their number of training interactions; the *active*
  group is the top ``top`` share (5 % by default) of the users that have at least one
  training row, the rest are *inactive* (users without training rows are inactive).
- **A-IGF** (active-inactive group fairness): ``mean metric(active) - mean metric(inactive)``
  over the users of a per-user metric table, NDCG@20 by default. CURE4Rec reports it signed;
  :func:`a_igf` returns its absolute value and :func:`a_igf_signed` the signed one.
- **shardGF**: the population variance (``ddof=0``) of one metric across the shard models of
  a sharded unlearner; 0 for a single model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trustrec.config import suggest
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, UnknownNameError


def activity_groups(train: Dataset, top: float = 0.05) -> np.ndarray:
    """Boolean mask over user indices: True for the most active users.

    With ``n`` the number of users that have at least one row in ``train``, the active group
    has ``max(1, floor(top * n + 0.5))`` users (``top * n`` rounded half up, at least one):
    the users with the most training rows, ties broken by the lower user index so the
    group is always exactly that size. On ML-100K's default 80 % training split all 943
    users have rows and the active group has ``round(0.05 * 943) = 47`` users.

    Args:
        train: the training interactions (the remaining data after a forget request).
        top: share of users with training rows that are active, in ``(0, 1]``.

    Returns:
        bool array of length ``train.n_users``.

    Raises:
        ConfigError: ``top`` outside ``(0, 1]``.
        ValueError: ``train`` has no interactions.
    """
    try:
        share = float(top)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0 < share <= 1:
        raise ConfigError(f"activity group share 'top' must be in (0, 1], got {top!r}")
    counts = train.user_counts()
    n = int((counts > 0).sum())
    if n == 0:
        raise ValueError(f"dataset {train.name!r} has no interactions: no activity groups")
    n_active = max(1, int(np.floor(share * n + 0.5)))
    # Stable sort on -count: equal counts keep ascending user order.
    order = np.argsort(-counts, kind="stable")[:n_active]
    active = np.zeros(train.n_users, dtype=bool)
    active[order] = True
    return active


def _group_labels(per_user: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    if "user" not in per_user.columns:
        raise ValueError("per-user table has no 'user' column")
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be a 1-d array over user indices, got shape "
                         f"{groups.shape}")
    users = per_user["user"].to_numpy(dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= len(groups)):
        bad = users[(users < 0) | (users >= len(groups))][0]
        raise ValueError(f"per-user table has user index {bad}, but groups cover only "
                         f"{len(groups)} users")
    return groups[users]


def group_metrics(per_user: pd.DataFrame, groups: np.ndarray) -> dict[str, float]:
    """Per-group sizes and metric means of a per-user table.

    Args:
        per_user: a table from :func:`~trustrec.evaluate.ranking.evaluate_ranking` (a
            ``user`` column and metric columns named ``{metric}@{k}``).
        groups: one label per user index. A boolean mask (e.g. from
            :func:`activity_groups`) names its groups ``active`` (True) and ``inactive``
            (False); any other labels are used as they are (``str(label)``).

    Returns:
        Flat dict: ``n_users_{group}`` and ``{metric}_{group}`` for every metric column
        and group, e.g. ``{"n_users_active": 47, "ndcg@20_active": 0.41, ...}``. A group
        with no evaluated user has size 0 and NaN means. Boolean groups always report both
        ``active`` and ``inactive``.
    """
    labels = _group_labels(per_user, groups)
    cols = [c for c in per_user.columns if "@" in c]
    if np.asarray(groups).dtype == bool:
        names = {True: "active", False: "inactive"}
        keys = [True, False]
    else:
        keys = sorted(set(labels.tolist()), key=str)
        names = {g: str(g) for g in keys}
    out: dict[str, float] = {}
    for g in keys:
        sel = labels == g
        out[f"n_users_{names[g]}"] = int(sel.sum())
        for c in cols:
            vals = per_user[c].to_numpy(dtype=np.float64)[sel]
            out[f"{c}_{names[g]}"] = float(vals.mean()) if len(vals) else float("nan")
    return out


def a_igf_signed(per_user: pd.DataFrame, train: Dataset, metric: str = "ndcg@20",
                 top: float = 0.05) -> float:
    """Signed A-IGF: mean ``metric`` of active users minus that of inactive users.

    Args:
        per_user: per-user metric table (evaluated users only).
        train: training data defining the activity groups (see :func:`activity_groups`).
        metric: a metric column of ``per_user``.
        top: share of users that are active.

    Returns:
        The difference; NaN when either group has no evaluated user.

    Raises:
        UnknownNameError: ``metric`` is not a column of ``per_user``.
    """
    if metric not in per_user.columns:
        cols = [c for c in per_user.columns if "@" in c]
        raise UnknownNameError(f"unknown metric {metric!r} in per-user table"
                               f"{suggest(metric, cols)}")
    g = group_metrics(per_user[["user", metric]], activity_groups(train, top))
    return g[f"{metric}_active"] - g[f"{metric}_inactive"]


def a_igf(per_user: pd.DataFrame, train: Dataset, metric: str = "ndcg@20",
          top: float = 0.05) -> float:
    """A-IGF = ``|mean metric(active) - mean metric(inactive)|`` (lower is fairer).

    See :func:`a_igf_signed` for the arguments; this is its absolute value.
    """
    return abs(a_igf_signed(per_user, train, metric, top))


def shard_fairness(per_shard_metric: Sequence[float]) -> float:
    """shardGF: population variance (``ddof=0``) of a metric across shard models.

    Args:
        per_shard_metric: one value per shard (e.g. each shard model's NDCG@20 on its own
            users); a single model gives 0.

    Raises:
        ValueError: no values, or a value that is not finite.
    """
    v = np.asarray(per_shard_metric, dtype=np.float64).ravel()
    if len(v) == 0:
        raise ValueError("shard_fairness needs at least one per-shard value")
    if not np.isfinite(v).all():
        raise ValueError(f"per-shard metric values must be finite, got {v.tolist()}")
    return float(np.var(v))
