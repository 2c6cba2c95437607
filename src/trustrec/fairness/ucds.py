"""Stage 1 of In-UCDS: each disadvantaged user's constrained dominant set of advantaged users.

In-UCDS (Han et al., ACM MM 2023) pairs every disadvantaged user ``u`` with a small set of
advantaged users it resembles, its *user-oriented constrained dominant set* (UCDS), found on
the user–user co-interaction graph (``A_uv`` = number of items both users interacted with in
training, the paper's; or that count's cosine, ``similarity = "cosine"``, which the methods
use by default, :mod:`trustrec.fairness.inprocess`) by the constrained dominant sets of
Zemene & Pelillo (ECCV 2016):

* The vertex set of ``u``'s problem is ``{u} ∪ advantaged``, the constraint set ``S = {u}``.
  ``B = A − α·Î_S``, ``Î_S`` the identity with a zero at ``u``; for ``α > λ_max(A_adv)``, the
  largest eigenvalue of the advantaged block, every local maximiser of ``xᵀBx`` on the
  simplex has ``u`` in its support (Zemene & Pelillo, Theorem 1), so the dominant set found
  is one *containing* ``u``.
* Replicator dynamics on the simplex from the barycentre, until ``xᵀBx`` stops rising or
  ``max_iter``: the exponential form with an adaptive step (:func:`replicator`), whose
  equilibria are those of the linear ``x ← x ⊙ (B'x) / (xᵀB'x)``, ``B' = B + α·11ᵀ``.
* The UCDS is the advantaged part of the support (``x_v > support·max x``) that shares
  at least one item with ``u`` (a member that is in the set only through the
  advantaged clique would pull ``u`` toward users it has nothing in common with), its
  ``neighbors`` members with the largest ``x`` (the released code keeps 3).

Vectorised: the advantaged block is the same in every problem, so one iteration for all
disadvantaged users is a single ``(n_dis, n_adv) @ (n_adv, n_adv)`` product; users are
processed in chunks. Never a loop over user pairs.

Where this departs from the released code (``../shared/papers/fairness-longtail.md``):
``α = 1.1·λ_max(A_adv)`` (the code's estimate is always 1.1e-3, a trace of a zeroed
diagonal), replicator updates on the simplex (the code normalises in ``L2``), iteration to
convergence (the code stops after 5), the barycentre as start (the code starts at
``x_u = 1``, which is the pure strategy on ``u``) and the support as a membership test.
``A`` is normalised to ``[0, 1]`` by its largest entry over the pairs any problem reads
(one scale for every user, so one ``α`` holds for all).

In-Naive (:func:`naive_neighbors`) takes instead each disadvantaged user's ``neighbors``
most similar advantaged users.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from trustrec.data.dataset import Dataset
from trustrec.evaluate.ranking import dataset_csr


def co_interactions(train: Dataset, rows: np.ndarray, cols: np.ndarray,
                    similarity: str = "count") -> np.ndarray:
    """Dense ``(len(rows), len(cols))`` user–user affinities: ``"count"``, the number of
    items both users interacted with (the paper's), or ``"cosine"``, that count over
    ``sqrt(|I_u|·|I_v|)``."""
    x = dataset_csr(train).astype(np.float32)
    c = np.asarray((x[rows] @ x[cols].T).todense(), dtype=np.float32)
    if similarity == "cosine":  # distinct items (repeated rows count once, as above)
        n = np.sqrt(np.maximum(np.diff(x.indptr), 1)).astype(np.float32)
        c /= n[rows][:, None] * n[cols][None, :]
    return c


def _pairs(users: np.ndarray, partners: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``(n, 2)`` (user, partner) rows where ``keep``."""
    r, c = np.nonzero(keep)
    return np.stack([users[r], partners[r, c]], axis=1).astype(np.int64)


def top_members(score: np.ndarray, advantaged: np.ndarray, users: np.ndarray,
                neighbors: int, eligible: np.ndarray) -> np.ndarray:
    """``(n, 2)`` pairs of each user with its ``neighbors`` best-scored eligible
    advantaged users (ties by lower index)."""
    k = min(neighbors, score.shape[1])
    key = np.where(eligible, score, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(eligible, order, axis=1)
    return _pairs(users, advantaged[order], keep)


def naive_neighbors(train: Dataset, advantaged: np.ndarray, neighbors: int = 3,
                    similarity: str = "count") -> np.ndarray:
    """In-Naive: ``(n, 2)`` pairs (disadvantaged user, one of its ``neighbors`` most
    similar advantaged users by :func:`co_interactions`, sharing at least one item)."""
    adv = np.flatnonzero(advantaged)
    dis = np.flatnonzero(~advantaged & (train.user_counts() > 0))
    out = [np.zeros((0, 2), dtype=np.int64)]
    for start in range(0, len(dis), 4096):
        rows = dis[start:start + 4096]
        c = co_interactions(train, rows, adv, similarity)
        out.append(top_members(c, adv, rows, neighbors, c > 0))
    return np.concatenate(out)


def dominance_alpha(a_adv: np.ndarray) -> float:
    """``1.1·λ_max`` of the normalised advantaged block (a small positive value when it
    has no positive eigenvalue)."""
    if not len(a_adv):
        lam = 0.0
    elif len(a_adv) <= 1000:
        lam = float(np.linalg.eigvalsh(a_adv.astype(np.float64))[-1])
    else:  # the largest eigenvalue only
        lam = float(spla.eigsh(a_adv.astype(np.float64), k=1, which="LA")[0][0])
    return 1.1 * lam if lam > 0 else 1e-3


def _objective(xu: np.ndarray, xa: np.ndarray, a_adv: np.ndarray, a_u: np.ndarray,
               alpha: float) -> np.ndarray:
    """``xᵀBx`` of each problem (``B``'s ``u``-diagonal is 0, the advantaged one ``-α``)."""
    return _value(xu, xa, *_payoffs(xu, xa, a_adv, a_u, alpha))


def _value(xu: np.ndarray, xa: np.ndarray, pay_u: np.ndarray, pay_a: np.ndarray
           ) -> np.ndarray:
    """``xᵀBx`` from the payoffs ``Bx`` at ``x``."""
    return xu * pay_u + (xa * pay_a).sum(1)


def _payoffs(xu: np.ndarray, xa: np.ndarray, a_adv: np.ndarray, a_u: np.ndarray,
             alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(Bx)_u`` and ``(Bx)_adv`` of each problem."""
    return (a_u * xa).sum(1), a_u * xu[:, None] + xa @ a_adv - alpha * xa


def replicator(a_adv: np.ndarray, a_u: np.ndarray, alpha: float, max_iter: int,
               tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Exponential replicator dynamics of one chunk of constrained problems.

    ``x_i ← x_i·exp(κ (Bx)_i) / Σ_j x_j·exp(κ (Bx)_j)``, from the barycentre, with a step
    ``κ`` per problem that grows by 1.5 after an ascent and halves (the step undone) when
    ``xᵀBx`` would drop: the same equilibria as the linear dynamics (the module
    docstring's), reached in hundreds of iterations instead of tens of thousands (the
    linear dynamics crawl when the shift ``α`` dwarfs the payoff differences). One
    ``(n, m) @ (m, m)`` product an iteration, in float32.

    Args:
        a_adv: ``(m, m)`` normalised advantaged block, zero diagonal.
        a_u: ``(n, m)`` each disadvantaged user's normalised co-interactions.
        alpha: the constraint's ``α``.
        max_iter: iteration cap.
        tol: stop when no problem's ``xᵀBx`` rose by this much in 10 iterations.

    Returns:
        ``(x_u, x_adv, iterations)``: ``(n,)`` weight of each user on itself and ``(n, m)``
        on the advantaged users, on the simplex.
    """
    a_adv = np.asarray(a_adv, dtype=np.float32)
    a_u = np.asarray(a_u, dtype=np.float32)
    n, m = a_u.shape
    xu = np.full(n, 1.0 / (m + 1), dtype=np.float32)
    xa = np.full((n, m), 1.0 / (m + 1), dtype=np.float32)
    kappa = np.full(n, 1.0 / alpha, dtype=np.float32)
    best_u, best_a, pay_u, pay_a = xu, xa, *_payoffs(xu, xa, a_adv, a_u, alpha)
    value = before = _value(xu, xa, pay_u, pay_a)
    it = 0
    for it in range(1, max_iter + 1):
        top = np.maximum(pay_u, pay_a.max(1, initial=-np.inf))
        eu = best_u * np.exp(kappa * (pay_u - top))
        ea = best_a * np.exp(kappa[:, None] * (pay_a - top[:, None]))
        z = eu + ea.sum(1)
        xu, xa = eu / z, ea / z[:, None]
        new_u, new_a = _payoffs(xu, xa, a_adv, a_u, alpha)
        new_value = _value(xu, xa, new_u, new_a)
        up = new_value >= value
        best_u, best_a = np.where(up, xu, best_u), np.where(up[:, None], xa, best_a)
        pay_u, pay_a = np.where(up, new_u, pay_u), np.where(up[:, None], new_a, pay_a)
        value = np.where(up, new_value, value)
        kappa = np.where(up, kappa * 1.5, kappa * 0.5).astype(np.float32)
        if it % 10 == 0:
            if float((value - before).max(initial=0.0)) < tol:
                break
            before = value
    return best_u, best_a, it


def dominant_sets(train: Dataset, advantaged: np.ndarray, neighbors: int = 3,
                  max_iter: int = 1000, tol: float = 1e-7, support: float = 1e-3,
                  chunk: int = 2048, similarity: str = "count"
                  ) -> tuple[np.ndarray, dict[str, float]]:
    """In-UCDS stage 1: ``(n, 2)`` pairs (disadvantaged user, member of its UCDS).

    Args:
        train: training interactions (the co-interaction graph).
        advantaged: bool mask over users (e.g.
            :func:`~trustrec.evaluate.fairness.activity_groups`).
        neighbors: at most this many members per user (largest weight first).
        max_iter: replicator iterations cap.
        tol: convergence tolerance on the objective (see :func:`replicator`).
        support: a member's weight must exceed ``support × max weight`` of its problem.
        chunk: disadvantaged users per batched solve.
        similarity: the graph's affinity (:func:`co_interactions`).

    Returns:
        The pairs and a record: ``alpha``, ``max_iterations`` run, ``users_with_set``.
        Disadvantaged users without co-interactions with any advantaged user get no pair.
    """
    adv = np.flatnonzero(advantaged)
    dis = np.flatnonzero(~advantaged & (train.user_counts() > 0))
    a_adv = co_interactions(train, adv, adv, similarity)
    np.fill_diagonal(a_adv, 0.0)
    scale = float(a_adv.max(initial=0.0))
    starts = range(0, len(dis), chunk)
    for start in starts:  # one scale for all problems; blocks are rebuilt below
        scale = max(scale, float(co_interactions(train, dis[start:start + chunk], adv,
                                                 similarity).max(initial=0.0)))
    scale = scale or 1.0
    a_adv /= scale
    alpha = dominance_alpha(a_adv)
    out, iters, with_set = [np.zeros((0, 2), dtype=np.int64)], 0, 0
    for start in starts:
        rows = dis[start:start + chunk]
        a_u = co_interactions(train, rows, adv, similarity) / scale
        xu, xa, it = replicator(a_adv, a_u, alpha, max_iter, tol)
        iters = max(iters, it)
        peak = np.maximum(xa.max(1, initial=0.0), xu)
        eligible = (xa > support * peak[:, None]) & (a_u > 0)
        pairs = top_members(xa, adv, rows, neighbors, eligible)
        with_set += len(np.unique(pairs[:, 0]))
        out.append(pairs)
    return np.concatenate(out), {"alpha": alpha, "max_iterations": float(iters),
                                 "users_with_set": float(with_set)}


def pair_graph(pairs: np.ndarray, n_users: int) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency of the pairs (duplicates collapse)."""
    a = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                      shape=(n_users, n_users)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return sp.csr_matrix(a)
