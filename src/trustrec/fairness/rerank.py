"""UGF re-ranking (Li et al., "User-oriented Fairness in Recommendation", WWW 2021).

The base model's top-``N`` candidates of every user are re-ranked by the 0-1 program

    max Σ_u Σ_j W_uj S_uj
    s.t. Σ_j W_uj = k for every user u,
         | mean_{u ∈ Z1} M_u(W) − mean_{u ∈ Z2} M_u(W) | ≤ ε,   W_uj ∈ {0, 1},

with ``S`` the base scores, ``Z1`` / ``Z2`` the advantaged / disadvantaged users (the top
``top`` share by training interactions, as UGF measures them) and ``M`` a metric that is
linear in the chosen set: Li et al.'s per-user F1@k ``2 Σ_j W_uj R_uj / (|rel_u| + k)``
(their constraint; ``"recall"`` and ``"precision"`` are offered too). The chosen ``k``
items are listed in the base model's order, above every other item.

**The relevance ``R`` is the evaluation's own labels**, as in Li et al.'s protocol: the
constraint reads the held-out items the lists are scored on, so the method is an
*oracle* post-processing (an upper bound on what re-ranking can do for UGF), not a
deployable one. The bench marks it so (``uses_target_labels``). The paper solves the
program with Gurobi; here it is the open HiGHS solver (``scipy.optimize.milp``).

Exact reduction (ours, the same optimum): a user's term in the constraint depends only
on *how many* relevant candidates it keeps, so at the optimum a user keeps its best-scored
relevant candidates and fills the rest with its best-scored others. The program therefore
needs only each user's relevant candidates plus its top ``k`` others, and only the users
with a relevant candidate (every other user keeps its top ``k``): a few thousand binaries
on MovieLens-100K instead of ``users × N``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.optimize import Bounds, LinearConstraint, milp

from trustrec.config import NonNegativeFloat, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.errors import ConfigError
from trustrec.evaluate.fairness import activity_groups
from trustrec.evaluate.ranking import dataset_csr, recommend_lists
from trustrec.fairness.inprocess import FAIRNESS, Plain
from trustrec.models.base import EmbeddingRecommender

LINEAR_METRICS = ("f1", "recall", "precision")


@dataclass(frozen=True)
class Reranked:
    """The outcome of :func:`ugf_rerank`.

    Attributes:
        lists: ``(n_users, k)`` chosen items, in the base model's order.
        record: the gap before and after (on the constraint's metric), the base score
            given up per user, users changed, variables, solver status and seconds.
    """

    lists: np.ndarray
    record: dict[str, float | str] = field(default_factory=dict)


def _metric_weights(relevant: np.ndarray, n_relevant: np.ndarray, k: int,
                    metric: str) -> np.ndarray:
    """Per (user, candidate) contribution of choosing it to the user's metric."""
    rel = relevant.astype(np.float64)
    denom = np.maximum(n_relevant, 1).astype(np.float64)[:, None]
    if metric == "f1":
        return 2.0 * rel / (denom + k)
    if metric == "recall":
        return rel / denom
    return rel / k


def ugf_rerank(scores: np.ndarray, candidates: np.ndarray, relevant: np.ndarray,
               n_relevant: np.ndarray, advantaged: np.ndarray, k: int,
               epsilon: float = 0.05,
               metric: Literal["f1", "recall", "precision"] = "f1",
               time_limit: float = 60.0, reduce: bool = True) -> Reranked:
    """Li et al.'s fairness-constrained 0-1 re-ranking (module docstring).

    Args:
        scores: ``(n_users, N)`` base scores of each user's candidates, best first.
        candidates: ``(n_users, N)`` the candidate item ids (``-1`` pads a short list).
        relevant: ``(n_users, N)`` bool, whether a candidate is a relevant item.
        n_relevant: ``(n_users,)`` the user's relevant items in all (in the lists or not).
        advantaged: ``(n_users,)`` bool, the advantaged group ``Z1``.
        k: list length, ``1 <= k <= N``.
        epsilon: the allowed gap, ``>= 0``.
        metric: the constrained per-user metric (linear in the chosen set).
        time_limit: seconds for the solver.
        reduce: solve the reduced program (module docstring; the same optimum); False
            poses every candidate of every user, as the paper does (for comparison).

    Returns:
        :class:`Reranked`.

    Raises:
        ConfigError: mismatched shapes, ``k`` out of range, a group with no user, a
            negative ``epsilon``, an unknown metric, or no choice meets the constraint.
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.int64)
    relevant = np.asarray(relevant, dtype=bool) & (candidates >= 0)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    advantaged = np.asarray(advantaged, dtype=bool)
    n_users, n_cand = scores.shape if scores.ndim == 2 else (0, 0)
    if scores.ndim != 2 or candidates.shape != scores.shape or relevant.shape != scores.shape:
        raise ConfigError(f"ugf_rerank: scores {scores.shape}, candidates "
                          f"{candidates.shape} and relevant {relevant.shape} must be the "
                          "same (users, N) shape")
    if n_relevant.shape != (n_users,) or advantaged.shape != (n_users,):
        raise ConfigError("ugf_rerank: n_relevant and advantaged need one entry per user")
    if not 1 <= k <= n_cand:
        raise ConfigError(f"ugf_rerank: k = {k} must be in [1, N = {n_cand}]")
    if epsilon < 0:
        raise ConfigError(f"ugf_rerank: epsilon must be >= 0, got {epsilon}")
    if metric not in LINEAR_METRICS:
        raise ConfigError(f"ugf_rerank: metric {metric!r} is not one of {LINEAR_METRICS} "
                          "(the constraint must be linear in the chosen set)")
    if advantaged.all() or not advantaged.any():
        raise ConfigError("ugf_rerank: both groups need at least one user")
    if ((candidates >= 0).sum(1) < k).any():
        raise ConfigError(f"ugf_rerank: a user has fewer than k = {k} candidates")
    if (relevant.sum(1) > n_relevant).any():
        raise ConfigError("ugf_rerank: a user has more relevant candidates than relevant "
                          "items")
    t0 = time.perf_counter()
    weight = _metric_weights(relevant, n_relevant, k, metric)
    sign = np.where(advantaged, 1.0 / advantaged.sum(), -1.0 / (~advantaged).sum())
    base_gap = float((sign[:, None] * weight[:, :k]).sum())
    # Reduction: relevant candidates + the top-k others, of users with a relevant one.
    others_rank = np.cumsum(~relevant & (candidates >= 0), axis=1)
    keep = relevant | ((~relevant) & (candidates >= 0) & (others_rank <= k))
    keep &= relevant.any(1)[:, None]
    if not reduce:
        keep = candidates >= 0
    rows, cols = np.nonzero(keep)
    chosen = np.zeros_like(relevant)
    chosen[:, :k] = True
    status = "unconstrained"
    if abs(base_gap) > epsilon:
        if not relevant.any():
            raise ConfigError("ugf_rerank: no user has a relevant candidate, so no list "
                              f"changes the gap {base_gap:+.4f}; widen N")
        users, local = np.unique(rows, return_inverse=True)
        n_var = len(rows)
        per_user = sp.csr_matrix((np.ones(n_var), (local, np.arange(n_var))),
                                 shape=(len(users), n_var))
        gap_row = sp.csr_matrix((sign[rows] * weight[rows, cols],
                                 (np.zeros(n_var, dtype=np.int64), np.arange(n_var))),
                                shape=(1, n_var))
        # The users outside the program have no relevant candidate: they add 0 to the gap.
        # The solver accepts a row that misses its bound by its feasibility tolerance
        # (~1e-7): bound the gap that much inside ε so the promise holds exactly.
        bound = max(epsilon - 1e-7, 0.0)
        res = milp(-scores[rows, cols], integrality=np.ones(n_var),
                   bounds=Bounds(0, 1),
                   constraints=[LinearConstraint(per_user, k, k),
                                LinearConstraint(gap_row, -bound, bound)],
                   options={"time_limit": float(time_limit), "disp": False,
                            "mip_rel_gap": 0.0})  # the score sum is large; its loss not
        if res.x is None and res.status == 1:
            raise ConfigError(f"ugf_rerank: the solver reached its time limit "
                              f"({time_limit} s) before a feasible choice; raise "
                              "time_limit")
        if res.x is None:
            raise ConfigError(f"ugf_rerank: no choice of {k} among the top {n_cand} "
                              f"candidates keeps |gap| <= {epsilon} ({res.message}); "
                              "widen N or epsilon")
        status = "optimal" if res.status == 0 else f"feasible ({res.message})"
        chosen[users] = False
        chosen[rows, cols] = res.x > 0.5
    order = np.argsort(~chosen, axis=1, kind="stable")[:, :k]  # chosen, in base order
    lists = np.take_along_axis(candidates, order, axis=1)
    gap = float((sign[:, None] * weight * chosen).sum())
    lost = scores[:, :k].sum() - np.where(chosen, scores, 0.0).sum()
    record: dict[str, float | str] = {
        "gap_before": base_gap, "gap_after": gap, "epsilon": float(epsilon),
        "metric": metric, "candidates": int(n_cand), "variables": int(len(rows)),
        "users_changed": int((~chosen[:, :k]).any(1).sum()),
        "score_lost_per_user": float(lost / n_users),
        "status": status, "seconds": time.perf_counter() - t0}
    return Reranked(lists, record)


class ListScorer:
    """A model's scores with fixed lists on top: for the users of ``users``, the items of
    their ``lists`` row rank first, in the row's order; every other score is the model's.

    Args:
        model: the wrapped recommender.
        users: ``(n,)`` user indices.
        lists: ``(n, k)`` their lists (``-1`` pads).
    """

    def __init__(self, model: EmbeddingRecommender, users: np.ndarray,
                 lists: np.ndarray) -> None:
        self.model = model
        self.scores_from_history = bool(getattr(model, "scores_from_history", False))
        self.lists = np.asarray(lists, dtype=np.int64)
        self._row = np.full(int(model.n_users_), -1, dtype=np.int64)
        self._row[np.asarray(users, dtype=np.int64)] = np.arange(len(users))

    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """The model's scores, the fixed lists lifted above each row's maximum."""
        s = np.array(self.model.score(query), dtype=np.float32, copy=True)
        users = query.users if isinstance(query, Query) else np.asarray(query)
        rows = self._row[users]
        r = np.flatnonzero(rows >= 0)
        if len(r):
            lists = self.lists[rows[r]]
            k = lists.shape[1]
            lift = s[r].max(1, keepdims=True) + np.arange(k, 0, -1, dtype=np.float32)
            rr, cc = np.nonzero(lists >= 0)
            s[r[rr], lists[rr, cc]] = lift[rr, cc]
        return s


@typed_config
class UGFRerankConfig:
    """Options of UGF re-ranking (:func:`ugf_rerank`).

    Attributes:
        epsilon: the allowed |UGF| of the constrained metric (Li et al.'s 0.05).
        k: list length the constraint is on (the evaluation's cut-off).
        candidates: top-``N`` candidates of the base model re-ranked.
        metric: the constrained per-user metric: ``"f1"`` (Li et al.'s), ``"recall"`` or
            ``"precision"``.
        top: share of users that are advantaged (the spec's, as UGF measures).
        time_limit: seconds for the solver.
    """

    epsilon: NonNegativeFloat = 0.05
    k: PositiveInt = 10
    candidates: PositiveInt = 100
    metric: Literal["f1", "recall", "precision"] = "f1"
    top: Annotated[float, Field(gt=0, lt=1)] = 0.05
    time_limit: PositiveFloat = 60.0

    def __post_init__(self) -> None:
        if self.candidates < self.k:
            raise ConfigError(f"candidates = {self.candidates} must be >= k = {self.k}")


@FAIRNESS.register("ugf-rerank")
class UGFRerank(Plain):
    """Li et al.'s UGF re-ranking on plainly trained lists; an oracle that reads the
    evaluation's labels (module docstring)."""

    name = "ugf-rerank"
    Config = UGFRerankConfig
    uses_target_labels = True

    def fit(self, model: EmbeddingRecommender, train: Dataset, valid: Dataset | None = None,
            *, seed: int = 0, progress: bool = False) -> EmbeddingRecommender:
        """Plain training (the re-ranking happens in :meth:`serve`)."""
        model = super().fit(model, train, valid, seed=seed, progress=progress)
        model.fit_info_["fairness"] = {"method": self.name, "config": self.config_dict()}
        return model

    def serve(self, model: EmbeddingRecommender, known: Dataset, target: Dataset,
              train: Dataset, history: Dataset | None = None) -> ListScorer:
        """Re-rank the top candidates of every user with a ``target`` item."""
        cfg: UGFRerankConfig = self.config
        truth = dataset_csr(target)
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        lists, scores = recommend_lists(model, known, users, cfg.candidates, history,
                                        with_scores=True)
        relevant = np.asarray(truth[users[:, None], np.maximum(lists, 0)].todense(),
                              dtype=bool) & (lists >= 0)
        out = ugf_rerank(np.where(lists >= 0, scores, 0.0), lists, relevant,
                         np.diff(truth.indptr)[users], activity_groups(train, cfg.top)[users],
                         cfg.k, cfg.epsilon, cfg.metric, cfg.time_limit)
        model.fit_info_.setdefault("fairness", {})["rerank"] = out.record
        return ListScorer(model, users, out.lists)
