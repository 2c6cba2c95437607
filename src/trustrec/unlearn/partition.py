"""Partitions of users (or interactions) into shards for shard-ensemble unlearning.

* :func:`balanced_partition`: a random split, sizes differing by at most one (SISA).
* :func:`balanced_kmeans`: k-means with anchors and a capacity per group, points assigned
  nearest-first (RecEraser's user-based partition, UBP, with ``capacity=1.2``; LASER's
  balanced k-means with ``capacity=1``).
* :func:`interaction_balanced_partition`: RecEraser's interaction-based partition (IBP):
  (user, item) rows assigned by the product of the user's and the item's distance to each
  anchor.
* :func:`ot_balanced_partition`: UltraRE's optimal-transport balanced clustering, exact
  (``ot.emd``) or entropic (``ot.sinkhorn``), rounded to exactly balanced shards.
* :func:`greedy_assign`: the capacity-constrained nearest-first assignment under all of
  them; :func:`within_shard_distance`: the quality measure of a partition.

Every function is deterministic given its seed; distances are computed in float64.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import ot
import scipy.sparse as sp
from numba import njit

from trustrec.errors import ConfigError, DataFormatError
from trustrec.seeding import rng

#: Names of the optimal-transport solvers of :func:`ot_balanced_partition`.
OTMethod = Literal["exact", "entropic"]
OT_METHODS: tuple[str, ...] = get_args(OTMethod)


def balanced_partition(n: int, n_shards: int, seed: int) -> np.ndarray:
    """Assign ``n`` indices to ``n_shards`` shards at random, sizes differing by at most 1.

    A permutation from ``rng(seed, "sisa", "partition")`` is dealt round-robin: the index
    at position p of the permutation goes to shard ``p % n_shards``.

    Returns:
        int64 shard per index, length ``n``.
    """
    perm = rng(seed, "sisa", "partition").permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[perm] = np.arange(n, dtype=np.int64) % n_shards
    return out


# ---------------------------------------------------------------------------- helpers
def _check_points(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(f"{name} must be a 2-D numeric array (points x dims), "
                              f"got shape {x.shape} and dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataFormatError(f"{name} holds NaN or infinite values")
    return x


def _check_groups(k: int, n: int, iters: int) -> tuple[int, int]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ConfigError(f"the number of groups must be an integer in 1..{n} (the number "
                          f"of points), got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ConfigError(f"iters must be an integer >= 1, got {iters!r}")
    return int(k), int(iters)


def group_capacity(n: int, k: int, capacity: float) -> int:
    """``ceil(capacity * n / k)``, the most points a group may hold (rounding noise ignored).

    Raises:
        ConfigError: ``capacity < 1`` (then k groups could not hold all n points).
    """
    if not (isinstance(capacity, (int, float, np.floating)) and math.isfinite(capacity)
            and capacity >= 1):
        raise ConfigError(f"capacity must be a finite number >= 1 (a group may hold "
                          f"capacity * n / k points), got {capacity!r}")
    return int(math.ceil(round(float(capacity) * n / k, 9)))


def sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(x), len(centres))`` in float64, clipped at 0."""
    d = ((x * x).sum(1)[:, None] - 2.0 * (x @ centres.T) + (centres * centres).sum(1)[None])
    return np.maximum(d, 0.0)


def _group_means(x: np.ndarray, groups: np.ndarray, k: int, old: np.ndarray) -> np.ndarray:
    """Mean of ``x`` per group (a sparse ``(k, n)`` one-hot product); an empty group keeps
    its old centre."""
    n = len(groups)
    onehot = sp.csr_matrix((np.ones(n), (groups, np.arange(n))), shape=(k, n))
    sums = onehot @ x
    counts = np.bincount(groups, minlength=k)
    out = old.copy()
    full = counts > 0
    out[full] = sums[full] / counts[full, None]
    return out


@njit(cache=True, nogil=True)
def _less(c1: float, f1: int, c2: float, f2: int) -> bool:
    return c1 < c2 or (c1 == c2 and f1 < f2)


@njit(cache=True, nogil=True)
def _sift_down(hc: np.ndarray, hf: np.ndarray, j: int, m: int) -> None:
    """Move entry ``j`` of the binary min-heap ``(hc, hf)[:m]`` down to its place."""
    while True:
        small, left, right = j, 2 * j + 1, 2 * j + 2
        if left < m and _less(hc[left], hf[left], hc[small], hf[small]):
            small = left
        if right < m and _less(hc[right], hf[right], hc[small], hf[small]):
            small = right
        if small == j:
            return
        hc[j], hc[small] = hc[small], hc[j]
        hf[j], hf[small] = hf[small], hf[j]
        j = small


@njit(cache=True, nogil=True)
def _greedy(cost: np.ndarray, pref: np.ndarray, cap: int, n_over: int) -> np.ndarray:
    """Nearest-first greedy with a lazy heap (equal to walking all pairs in sorted order).

    Every free row has one candidate in the heap: its cheapest column not yet refused.
    Popping the smallest ``(cost, flat index)`` visits the pairs in exactly the order of a
    stable sort of all ``n * k`` pairs, skipping pairs of rows already placed, which can no
    longer be taken anyway; a refused row pushes its next candidate.
    """
    n, k = cost.shape
    out = np.full(n, -1, dtype=np.int64)
    size = np.zeros(k, dtype=np.int64)
    nxt = np.zeros(n, dtype=np.int64)  # rank of each row's current candidate in pref
    hc = np.empty(n, dtype=np.float64)  # heap: cost, flat index (row * k + column)
    hf = np.empty(n, dtype=np.int64)
    for p in range(n):
        hc[p] = cost[p, pref[p, 0]]
        hf[p] = p * k + pref[p, 0]
    m = n
    for i in range(m // 2 - 1, -1, -1):  # heapify
        _sift_down(hc, hf, i, m)
    over = 0
    while m > 0:
        f = hf[0]
        p, g = f // k, f % k
        ok = size[g] < cap
        if not ok and size[g] == cap and over < n_over:
            over += 1
            ok = True
        if ok:  # place row p: pop the root
            out[p] = g
            size[g] += 1
            m -= 1
            hc[0], hf[0] = hc[m], hf[m]
        else:  # refused: replace the root by the row's next candidate
            nxt[p] += 1
            c = pref[p, nxt[p]]
            hc[0], hf[0] = cost[p, c], p * k + c
        _sift_down(hc, hf, 0, m)
    return out


def greedy_assign(cost: np.ndarray, cap: int, n_over: int = 0) -> np.ndarray:
    """Assign each row to a column, cheapest (row, column) pairs first, under capacities.

    All ``n * k`` pairs are taken in ascending cost (ties: the lower row, then the lower
    column); walking that order, a pair is taken when its row is still free and its column
    has room. A lazy heap of each free row's best remaining column visits the pairs in
    exactly that order without sorting all of them. A column holds at most ``cap`` rows,
    except that up to ``n_over`` columns may hold ``cap + 1`` (the first columns to ask for
    it). With ``cap = n // k`` and ``n_over = n % k`` the groups are exactly balanced.

    Args:
        cost: ``(n, k)`` costs (e.g. squared distances to centres); lower is preferred.
        cap: rows per column.
        n_over: columns that may take one row more.

    Returns:
        int64 column per row.

    Raises:
        ConfigError: ``cap * k + n_over < n`` (the rows do not fit).
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, k = cost.shape
    if cap * k + min(n_over, k) < n:
        raise ConfigError(f"{n} points do not fit in {k} groups of at most {cap} "
                          f"(+1 for {n_over} groups)")
    if not n:
        return np.zeros(0, dtype=np.int64)
    if np.isnan(cost).any():
        raise DataFormatError("greedy_assign: the costs hold NaN")
    pref = np.argsort(cost, axis=1, kind="stable")
    return _greedy(np.ascontiguousarray(cost), pref, int(cap), int(n_over))


def within_shard_distance(x: np.ndarray, assignment: np.ndarray) -> float:
    """Mean squared distance of each point to the centre (mean) of its shard.

    Args:
        x: ``(n, d)`` points.
        assignment: shard per point (non-negative ints), length n.

    Returns:
        ``mean_n ||x_n - mean(x of shard(n))||^2`` (0 for a single point per shard).
    """
    x = _check_points(x)
    a = np.asarray(assignment, dtype=np.int64)
    if a.shape != (len(x),) or (len(a) and a.min() < 0):
        raise DataFormatError(f"assignment must hold a non-negative shard per point "
                              f"(length {len(x)}), got shape {a.shape}")
    if not len(a):
        return 0.0
    k = int(a.max()) + 1
    centres = _group_means(x, a, k, np.zeros((k, x.shape[1])))
    return float(((x - centres[a]) ** 2).sum(1).mean())


# ---------------------------------------------------------------------------- k-means
def balanced_kmeans(x: np.ndarray, k: int, seed: int, *, iters: int = 50,
                    capacity: float = 1.0) -> np.ndarray:
    """Balanced k-means with anchors: nearest (point, centre) pairs are assigned first.

    Anchors are ``k`` distinct rows drawn with ``rng(seed, "partition", "anchors")``. Each
    iteration computes the squared distance of every point to every centre, assigns points
    by :func:`greedy_assign` (ascending distance, at most ``ceil(capacity * n / k)`` points
    per group), and moves each centre to the mean of its points (an empty group keeps its
    centre). It stops after ``iters`` iterations or when the assignment no longer changes.

    This is RecEraser's balanced partition (with ``capacity=1.2``) in the nearest-first
    order its paper describes (CURE4Rec's code walks the pairs farthest-first).

    Args:
        x: ``(n, d)`` points, e.g. pretrained user embeddings.
        k: number of groups, 1..n.
        seed: seed of the anchor draw.
        iters: most iterations.
        capacity: slack of the cap (>= 1); 1 gives sizes ``<= ceil(n / k)``.

    Returns:
        int64 group per row, in ``0..k-1``.

    Raises:
        ConfigError: ``k`` outside ``1..n``, ``iters < 1`` or ``capacity < 1``.
        DataFormatError: ``x`` is not a finite 2-D array.
    """
    x = _check_points(x)
    n = len(x)
    k, iters = _check_groups(k, n, iters)
    cap = group_capacity(n, k, capacity)
    centres = x[rng(seed, "partition", "anchors").choice(n, k, replace=False)]
    assign = np.zeros(0, dtype=np.int64)
    for _ in range(iters):
        new = greedy_assign(sq_distances(x, centres), cap)
        if np.array_equal(new, assign):
            break
        assign = new
        centres = _group_means(x, assign, k, centres)
    return assign


def interaction_balanced_partition(user_emb: np.ndarray, item_emb: np.ndarray,
                                   users: np.ndarray, items: np.ndarray, k: int, seed: int,
                                   *, iters: int = 50, capacity: float = 1.2) -> np.ndarray:
    """RecEraser's interaction-based partition (IBP) of (user, item) rows.

    Anchor g is a pair of centres ``(c_g^u, c_g^i)``, initialised from ``k`` distinct rows
    drawn with ``rng(seed, "partition", "anchors")`` (their user and item embeddings). The
    cost of row ``(u, i)`` for anchor g is ``||p_u - c_g^u||^2 * ||q_i - c_g^i||^2`` (the
    paper's score is its negative); rows are assigned cheapest-first by
    :func:`greedy_assign` with ``ceil(capacity * N / k)`` rows per shard, then
    ``c_g^u`` / ``c_g^i`` become the means of the user / item embeddings of the shard's rows.
    Stops after ``iters`` iterations or when the assignment no longer changes.

    Args:
        user_emb: ``(n_users, d)`` user embeddings.
        item_emb: ``(n_items, d')`` item embeddings.
        users: user index per row.
        items: item index per row.
        k: number of shards, 1..N.
        seed: seed of the anchor draw.
        iters: most iterations.
        capacity: slack of the cap (>= 1); RecEraser uses 1.2.

    Returns:
        int64 shard per row.
    """
    p, q = _check_points(user_emb, "user_emb"), _check_points(item_emb, "item_emb")
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise DataFormatError("users and items must be 1-D arrays of the same length")
    if len(users) and (users.min() < 0 or users.max() >= len(p) or items.min() < 0
                       or items.max() >= len(q)):
        raise DataFormatError("a user or item index is outside the embedding tables")
    n = len(users)
    k, iters = _check_groups(k, n, iters)
    cap = group_capacity(n, k, capacity)
    start = rng(seed, "partition", "anchors").choice(n, k, replace=False)
    cu, ci = p[users[start]], q[items[start]]
    assign = np.zeros(0, dtype=np.int64)
    for _ in range(iters):
        cost = sq_distances(p, cu)[users] * sq_distances(q, ci)[items]
        new = greedy_assign(cost, cap)
        if np.array_equal(new, assign):
            break
        assign = new
        # centre = mean over the shard's rows = count-weighted mean over distinct users/items
        cu = _pair_means(p, assign, users, k, cu)
        ci = _pair_means(q, assign, items, k, ci)
    return assign


def _pair_means(emb: np.ndarray, assign: np.ndarray, ids: np.ndarray, k: int,
                old: np.ndarray) -> np.ndarray:
    """Per shard, the mean of ``emb[ids]`` over its rows (a dense ``(k, len(emb))`` count
    matrix times ``emb``); an empty shard keeps its old centre."""
    n = len(emb)
    counts = np.bincount(assign * n + ids, minlength=k * n).reshape(k, n).astype(np.float64)
    sums = counts @ emb
    sizes = counts.sum(1)
    out = old.copy()
    out[sizes > 0] = sums[sizes > 0] / sizes[sizes > 0, None]
    return out


# ---------------------------------------------------------------------------- OT
def balanced_round(plan: np.ndarray) -> np.ndarray:
    """Round a transport plan ``(n, k)`` to an exactly balanced assignment.

    Rows are assigned by :func:`greedy_assign` on ``-plan`` (largest plan entries first)
    with ``n // k`` rows per group, ``n % k`` groups taking one more: sizes differ by at
    most one. Where ``argmax`` of the plan is already balanced (e.g. an exact plan that
    moves each point whole) the result equals the argmax.
    """
    plan = np.asarray(plan, dtype=np.float64)
    n, k = plan.shape
    return greedy_assign(-plan, n // k, n % k)


def transport_plan(cost: np.ndarray, method: str = "exact", reg: float = 0.05,
                   max_iter: int = 1000) -> np.ndarray:
    """Optimal transport plan between the points (mass 1/n each) and k groups (1/k each).

    Args:
        cost: ``(n, k)`` costs (e.g. squared distances to centres).
        method: ``"exact"`` (``ot.emd``, network simplex) or ``"entropic"``
            (``ot.sinkhorn`` in the log domain, on the cost divided by its maximum so that
            ``reg`` does not depend on the scale of the embeddings).
        reg: entropic regularisation (relative to the largest cost), > 0.
        max_iter: Sinkhorn iterations.

    Returns:
        ``(n, k)`` float64 plan, rows summing to about 1/n.
    """
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    n, k = cost.shape
    a, b = np.full(n, 1.0 / n), np.full(k, 1.0 / k)
    if method == "exact":
        return np.asarray(ot.emd(a, b, cost, numItermax=max(100_000, 50 * n * k)))
    if method == "entropic":
        if not reg > 0:
            raise ConfigError(f"entropic OT needs reg > 0, got {reg!r}")
        scale = cost.max()
        m = cost / scale if scale > 0 else cost
        return np.asarray(ot.sinkhorn(a, b, m, reg, method="sinkhorn_log",
                                      numItermax=max_iter, warn=False))
    raise ConfigError(f"unknown OT method {method!r}; available: {', '.join(OT_METHODS)}")


def ot_balanced_partition(x: np.ndarray, k: int, seed: int, *, iters: int = 10,
                          method: str = "exact", reg: float = 0.05,
                          max_iter: int = 1000) -> np.ndarray:
    """UltraRE's balanced clustering by optimal transport, exactly balanced.

    Anchors are ``k`` distinct rows drawn with ``rng(seed, "partition", "anchors")``. Each
    iteration computes ``D_gn = ||x_n - c_g||^2``, the transport plan with uniform marginals
    (:func:`transport_plan`), turns it into labels and moves the centres to the means of
    their points; it stops after ``iters`` iterations or when the labels no longer change.

    Choice: the paper labels each point by ``argmax_g plan``. That is exactly balanced only
    when the plan moves every point whole; an exact plan splits up to k-1 points between
    groups and an entropic plan splits all of them, so argmax can unbalance the groups. The
    labels here are :func:`balanced_round` of the plan (largest plan entries first under
    capacities ``n // k`` / ``n // k + 1``), which equals argmax wherever argmax is
    balanced and always gives sizes differing by at most one.

    Args:
        x: ``(n, d)`` points (pretrained user embeddings).
        k: number of groups, 1..n.
        seed: seed of the anchor draw.
        iters: most iterations (UltraRE uses 10).
        method: ``"exact"`` or ``"entropic"``.
        reg: entropic regularisation relative to the largest cost.
        max_iter: Sinkhorn iterations per plan.

    Returns:
        int64 group per row; group sizes differ by at most one.
    """
    if method not in OT_METHODS:
        raise ConfigError(f"unknown OT method {method!r}; available: {', '.join(OT_METHODS)}")
    x = _check_points(x)
    n = len(x)
    k, iters = _check_groups(k, n, iters)
    centres = x[rng(seed, "partition", "anchors").choice(n, k, replace=False)]
    assign = np.zeros(0, dtype=np.int64)
    for _ in range(iters):
        plan = transport_plan(sq_distances(x, centres), method, reg, max_iter)
        new = balanced_round(plan)
        if np.array_equal(new, assign):
            break
        assign = new
        centres = _group_means(x, assign, k, centres)
    return assign
