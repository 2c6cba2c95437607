"""Completeness by membership inference: were the forgotten rows used to train the model?

In the spirit of SCIF's membership-inference oracle (MIO), an attacker who sees a model's
scores tries to tell the rows it was trained on (members) from rows it never saw
(non-members). After exact forgetting the forgotten rows must look like non-members: the
attack's AUC is then about 0.5 (indistinguishable), as it is for a model retrained without
them, while the original, un-forgotten model scores clearly above 0.5 on the same rows.

Construction (all vectorised; users scored in memory-bounded chunks):

- **Signal** of a row ``(u, i)``: the rank percentile of item ``i`` in ``u``'s *unmasked*
  score row (every item competes, training items included):
  ``#{j: s_uj < s_ui or (s_uj = s_ui and j is drawn below i)} / (n_items − 1)``, i.e. 1 =
  the top item, 0 = the bottom one. Tied scores are ordered by a seeded random draw, so a
  row of equal scores (a user table reset to zero, say) gives uniformly random
  percentiles: the AUC is then 0.5 *with its sampling noise*, never an exact 0.5 with
  standard error 0 that would look more forgotten than retraining. A model that trained
  on ``(u, i)`` pushes it up; one that did not can only rank it as well as it generalises.
- **Members**: the forgotten *training* rows (the original model was trained on them).
- **Non-members**: held-out rows (the test split, which no model ever trained on) of the
  same request scope (:func:`membership_sets`): the forgotten users' held-out rows for a
  user request, the held-out rows of the users who lost a pair for an interaction request,
  the forgotten items' held-out rows for an item request.
- Only users that have both member and non-member rows take part.
- **Interaction-level AUC** (``mia_auc_interaction``): Mann–Whitney
  ``P(signal(member) > signal(non-member))``, ties counting ½, over the member and
  non-member rows, each row weighted by 1 / (its user's rows on that side), so that every
  user weighs the same on both sides.
- **User-level AUC** (``mia_auc_user``): per user, a member profile (mean signal over the
  user's member rows) and a non-member profile (mean over the user's non-member rows),
  both over the same number of rows, ``min(#members, #non-members)`` of the user (the
  larger side subsampled with ``rng(seed, "membership", "user", "subsample")``); the AUC
  separates the member profiles from the non-member profiles (2 profiles per user).
- **Noise**: the standard errors are a user-cluster bootstrap (users drawn with replacement,
  each bringing all its rows / both its profiles), because rows of one user are not
  independent; ``B`` replicates from ``rng(seed, "membership", level, "bootstrap")``.

Why the retrained model scores about 0.5: the per-user random split decides at random which
of a user's interactions are training, validation or test rows, so once the member rows are
removed from training, members and non-members are exchangeable for a model trained without
either of them (same users, same items, same process). Any systematic gap above 0.5 is
therefore memory of the forgotten rows.

Two refinements of the plain construction, both found on ML-100K with models retrained
without the forgotten rows, where the plain version drifted from 0.5 although nothing was
remembered:

- *Equal-size profiles.* Rank percentiles are bounded and skewed, so the mean of few rows
  is skewed more than the mean of many, and the side averaged over fewer rows wins more
  than half of the profile comparisons. With a user request (members ≈ 8× the non-members
  per user) plain means gave 0.42–0.46 after retraining; with an interaction request (fewer
  members than non-members) 0.53. Profiles over equally many rows are exchangeable, so the
  expected user-level AUC of a model that never saw either side is exactly 0.5.
- *Per-user weights.* Unweighted pooling mixes users differently on the two sides (an
  interaction request gives a light user about as many members as a heavy one, but
  non-members in proportion to its activity), and users differ in how high their items rank
  at all (light users like popular items): 0.515 ± 0.005 after retraining. Weighting each
  user equally on both sides removes this Simpson-type bias.

Choices where SCIF is silent: the oracle is a threshold attack on one scalar (the rank
percentile), evaluated by AUC rather than a trained classifier's accuracy, so no attacker
training data or hyper-parameter is needed and 0.5 is chance by construction. Non-member
rows whose (user, item) pair also occurs in the training data (duplicate interactions) are
dropped by :func:`membership_sets`, since they would be trained members in disguise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.ranking import _as_score_fn, score_block
from trustrec.seeding import rng

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.data.request import ForgetRequest

# Elements (users × items, or replicates × rows) handled at once: bounds memory on large
# catalogues while keeping ML-100K (943 × 1,682) in one block.
_BLOCK_ELEMENTS = 1 << 21

__all__ = [
    "mann_whitney_auc",
    "membership_report",
    "membership_sets",
    "rank_percentiles",
    "weighted_auc",
]


def _check_pairs(users: np.ndarray, items: np.ndarray, n_items: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(users, dtype=np.int64).ravel()
    i = np.asarray(items, dtype=np.int64).ravel()
    if len(u) != len(i):
        raise ValueError(f"users ({len(u)}) and items ({len(i)}) differ in length")
    if len(u) and u.min() < 0:
        raise ValueError(f"negative user index {int(u.min())}")
    if len(i) and (i.min() < 0 or (n_items is not None and i.max() >= n_items)):
        bad = int(i.min()) if i.min() < 0 else int(i.max())
        raise ValueError(f"item index {bad} out of range [0, {n_items})")
    return u, i


def random_tie_ranks(s: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Row-wise 0-based ranks of ``s`` (0 = lowest), ties ordered by a random draw."""
    key = gen.random(s.shape)
    order = np.lexsort((key, s), axis=-1)
    ranks = np.empty(s.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(s.shape[-1]), s.shape), axis=-1)
    return ranks


def rank_percentiles(model: object, users: np.ndarray, items: np.ndarray,
                     n_items: int | None = None, chunk_size: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Rank percentile of each ``(users[r], items[r])`` in the user's unmasked score row.

    The percentile is the item's 0-based rank from the bottom divided by ``n_items − 1``:
    1 for the user's top-scored item, 0 for the bottom one. Tied scores are ordered at
    random (``rng(seed, "membership", "ties")``, one draw per scored block), so an all-tied
    row gives uniformly random percentiles instead of a constant. Each user is scored once;
    users are scored in chunks so that a chunk holds about 2 M scores.

    Args:
        model: score source (``score(users)``, e.g. a Recommender or an Unlearner, or a
            plain score function).
        users: user index per row.
        items: item index per row.
        n_items: catalogue size (default: learnt from the first scored block).
        chunk_size: users scored at once (default: bounded by the catalogue size).
        seed: root seed of the tie-breaking draw.

    Returns:
        float64 array aligned with the rows (NaN for a catalogue of one item).
    """
    u, i = _check_pairs(users, items, n_items)
    out = np.full(len(u), np.nan)
    if len(u) == 0:
        return out
    score = _as_score_fn(model)
    order = np.argsort(u, kind="stable")
    su, si = u[order], i[order]
    uniq = np.unique(su)
    if n_items is None:
        n_items = int(np.shape(score(uniq[:1]))[1])
    if chunk_size is None:
        step = max(1, _BLOCK_ELEMENTS // max(n_items, 1))
    else:
        step = int(chunk_size)
        if step < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if len(i) and i.max() >= n_items:
        raise ValueError(f"item index {int(i.max())} out of range [0, {n_items})")
    gen = rng(seed, "membership", "ties")
    for start in range(0, len(uniq), step):
        block = uniq[start:start + step]
        lo = int(np.searchsorted(su, block[0], side="left"))
        hi = int(np.searchsorted(su, block[-1], side="right"))
        ranks = random_tie_ranks(score_block(score, block, n_items), gen)
        local = np.searchsorted(block, su[lo:hi])
        if n_items > 1:
            out[order[lo:hi]] = ranks[local, si[lo:hi]] / (n_items - 1.0)
    return out


def mann_whitney_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """``P(X > Y) + ½·P(X = Y)`` for X drawn from ``positive`` and Y from ``negative``.

    Computed from the joint average ranks (Mann–Whitney U / (n₊·n₋)); NaN values are
    dropped first. 1 = every positive above every negative, 0 = the reverse, 0.5 =
    indistinguishable.

    Returns:
        The AUC, NaN when either side is empty.
    """
    x = np.asarray(positive, dtype=np.float64).ravel()
    y = np.asarray(negative, dtype=np.float64).ravel()
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    n1, n0 = len(x), len(y)
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([x, y]), method="average")
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


class _ClusteredAUC:
    """Weighted Mann–Whitney AUC of two samples whose rows belong to clusters (users).

    ``AUC(c) = Σ_ij c[g_i] w_i · c[h_j] v_j · ([x_i > y_j] + ½[x_i = y_j]) / (Σ_i c[g_i] w_i
    · Σ_j c[h_j] v_j)`` for cluster multiplicities ``c``: all ones gives the estimate, and a
    multinomial draw of the clusters gives one bootstrap replicate. The non-members are
    sorted once; for each member the positions of its value among them are fixed, so a
    replicate only needs one cumulative sum of the non-members' weights. Replicates are
    evaluated together in chunks bounding memory.
    """

    def __init__(self, x: np.ndarray, gx: np.ndarray, wx: np.ndarray, y: np.ndarray,
                 gy: np.ndarray, wy: np.ndarray) -> None:
        clusters, inv = np.unique(np.concatenate([gx, gy]), return_inverse=True)
        self.n_clusters = len(clusters)
        self.cx, self.wx = inv[:len(x)], wx
        order = np.argsort(y, kind="stable")
        ys = y[order]
        self.cy, self.wy = inv[len(x):][order], wy[order]
        self.lo = np.searchsorted(ys, x, side="left")
        self.hi = np.searchsorted(ys, x, side="right")
        self.n_rows = max(len(x), len(y), 1)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """AUC per row of ``counts`` (replicates × clusters); NaN where a side weighs 0."""
        wy = counts[:, self.cy] * self.wy
        cum = np.zeros((len(counts), len(self.cy) + 1))
        np.cumsum(wy, axis=1, out=cum[:, 1:])
        wx = counts[:, self.cx] * self.wx
        below = np.take(cum, self.lo, axis=1)
        tied = np.take(cum, self.hi, axis=1) - below
        num = (wx * (below + 0.5 * tied)).sum(1)
        den = wx.sum(1) * cum[:, -1]
        ok = den > 0
        return np.where(ok, num / np.where(ok, den, 1.0), np.nan)

    def estimate(self) -> float:
        """The AUC with every cluster counted once."""
        if self.n_clusters == 0:
            return float("nan")
        return float(self(np.ones((1, self.n_clusters)))[0])

    def bootstrap_se(self, n_bootstrap: int, gen: np.random.Generator) -> float:
        """Standard deviation of the AUC over cluster-bootstrap replicates (NaN if < 2)."""
        if n_bootstrap < 2 or self.n_clusters == 0:
            return float("nan")
        k = self.n_clusters
        step = max(1, _BLOCK_ELEMENTS // max(self.n_rows, k))
        reps = []
        for start in range(0, n_bootstrap, step):
            b = min(step, n_bootstrap - start)
            reps.append(self(gen.multinomial(k, np.full(k, 1.0 / k), size=b).astype(float)))
        r = np.concatenate(reps)
        r = r[~np.isnan(r)]
        return float(r.std(ddof=1)) if len(r) >= 2 else float("nan")


def weighted_auc(positive: np.ndarray, negative: np.ndarray,
                 positive_weights: np.ndarray | None = None,
                 negative_weights: np.ndarray | None = None) -> float:
    """Mann–Whitney AUC with row weights (ties ½); equal weights give
    :func:`mann_whitney_auc`.

    Args:
        positive: member signals.
        negative: non-member signals.
        positive_weights: non-negative weight per member (default 1).
        negative_weights: non-negative weight per non-member (default 1).

    Returns:
        ``Σ w_i v_j ([x_i > y_j] + ½[x_i = y_j]) / (Σ w_i Σ v_j)``; NaN when a side has no
        weight.
    """
    x = np.asarray(positive, dtype=np.float64).ravel()
    y = np.asarray(negative, dtype=np.float64).ravel()
    wx = np.ones(len(x)) if positive_weights is None else np.asarray(positive_weights, float)
    wy = np.ones(len(y)) if negative_weights is None else np.asarray(negative_weights, float)
    if wx.shape != x.shape or wy.shape != y.shape:
        raise ValueError("weights must have one entry per value")
    if (wx < 0).any() or (wy < 0).any():
        raise ValueError("weights must be non-negative")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("signals must not be NaN")
    auc = _ClusteredAUC(x, np.zeros(len(x), np.int64), wx, y, np.zeros(len(y), np.int64), wy)
    return auc.estimate()


def _equal_size_profiles(signal: np.ndarray, users: np.ndarray, keep_n: np.ndarray,
                         gen: np.random.Generator, n_users: int) -> np.ndarray:
    """Per user, the mean signal over ``keep_n[user]`` of its rows drawn without
    replacement (a random key per row, the smallest keys kept)."""
    key = gen.random(len(users))
    order = np.lexsort((key, users))
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.empty(len(users), dtype=np.int64)
    pos[order] = np.arange(len(users)) - np.repeat(starts, counts)
    kept = pos < keep_n[users]
    total = np.bincount(users[kept], weights=signal[kept], minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep_n > 0, total / np.where(keep_n > 0, keep_n, 1), np.nan)


def membership_report(model: object, members: Dataset, nonmembers: Dataset, *,
                      seed: int = 0, n_bootstrap: int = 200,
                      chunk_size: int | None = None) -> dict[str, float]:
    """Membership-inference AUCs of ``model`` on members vs non-members (see module doc).

    Only users that have both member and non-member rows take part (the two sides are
    compared within the same users).

    Args:
        model: score source (a Recommender, an Unlearner or a score function).
        members: rows the model may have trained on (the forgotten training rows).
        nonmembers: rows no model trained on (held-out rows of the same request scope);
            same id space as ``members``.
        seed: root seed of the profile subsampling and the bootstrap draws.
        n_bootstrap: bootstrap replicates for the standard errors (0 or 1: no SE, NaN).
        chunk_size: users scored at once (default: bounded by the catalogue size).

    Returns:
        ``mia_auc_user``, ``mia_auc_interaction`` (about 0.5 = indistinguishable, above =
        the model remembers its members), ``mia_auc_user_se``, ``mia_auc_interaction_se``
        (user-cluster bootstrap standard errors), ``mia_n_users`` (users with both member
        and non-member rows), ``mia_n_members``, ``mia_n_nonmembers`` (their rows, the ones
        the AUCs use). AUCs are NaN when no user has both kinds of rows.

    Raises:
        DataFormatError: the two datasets have different id spaces.
        ConfigError: a negative ``n_bootstrap``.
    """
    mu, mi, nu, ni = paired_rows(members, nonmembers)
    check_bootstrap(n_bootstrap)
    signal = rank_percentiles(model, np.concatenate([mu, nu]), np.concatenate([mi, ni]),
                              n_items=members.n_items, chunk_size=chunk_size, seed=seed)
    return {f"mia_{k}": v for k, v in signal_aucs(
        signal[:len(mu)], mu, signal[len(mu):], nu, members.n_users, seed=seed,
        n_bootstrap=n_bootstrap).items()}


def check_bootstrap(n_bootstrap: object) -> None:
    """Raise ConfigError unless ``n_bootstrap`` is a non-negative integer."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
            or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")


def paired_rows(members: Dataset, nonmembers: Dataset
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(member users, member items, non-member users, non-member items)`` of the users
    that have both kinds of rows (int64; the rows every membership attack scores).

    Raises:
        DataFormatError: the two datasets have different id spaces.
    """
    if (members.n_users, members.n_items) != (nonmembers.n_users, nonmembers.n_items):
        raise DataFormatError(
            f"members {members.name!r} ({members.n_users} users x {members.n_items} items) "
            f"and non-members {nonmembers.name!r} ({nonmembers.n_users} x "
            f"{nonmembers.n_items}) must share one id space")
    n_users = members.n_users
    both = ((np.bincount(members.users, minlength=n_users) > 0)
            & (np.bincount(nonmembers.users, minlength=n_users) > 0))
    keep_m, keep_n = both[members.users], both[nonmembers.users]
    return (members.users[keep_m].astype(np.int64), members.items[keep_m].astype(np.int64),
            nonmembers.users[keep_n].astype(np.int64),
            nonmembers.items[keep_n].astype(np.int64))


def signal_aucs(sm: np.ndarray, mu: np.ndarray, sn: np.ndarray, nu: np.ndarray,
                n_users: int, *, seed: int = 0, n_bootstrap: int = 200) -> dict[str, float]:
    """User- and interaction-level AUCs of a per-row membership signal (module docstring).

    Args:
        sm: signal of each member row (higher = more member-like); NaN rows are dropped.
        mu: user of each member row.
        sn: signal of each non-member row.
        nu: user of each non-member row.
        n_users: size of the user id space.
        seed: root seed of the profile subsampling and the bootstrap draws.
        n_bootstrap: user-cluster bootstrap replicates (0 or 1: no SE, NaN).

    Returns:
        ``auc_user``, ``auc_interaction``, ``auc_user_se``, ``auc_interaction_se``,
        ``n_users``, ``n_members``, ``n_nonmembers``.
    """
    check_bootstrap(n_bootstrap)
    okm, okn = ~np.isnan(sm), ~np.isnan(sn)
    sm, mu, sn, nu = sm[okm], mu[okm], sn[okn], nu[okn]
    cm = np.bincount(mu, minlength=n_users).astype(np.float64)
    cn = np.bincount(nu, minlength=n_users).astype(np.float64)

    # Interaction level: each user weighs 1 on each side, so the two samples have the same
    # user mix (otherwise users with relatively more members would tilt the AUC).
    with np.errstate(divide="ignore"):
        inter = _ClusteredAUC(sm, mu, 1.0 / cm[mu], sn, nu, 1.0 / cn[nu])
    auc_i = inter.estimate()
    se_i = inter.bootstrap_se(int(n_bootstrap),
                              rng(seed, "membership", "interaction", "bootstrap"))

    # User level: per user, equally many member and non-member rows (the larger side
    # subsampled), so both profiles are means of the same number of draws.
    users = np.flatnonzero((cm > 0) & (cn > 0))
    k = np.minimum(cm, cn).astype(np.int64)
    gen = rng(seed, "membership", "user", "subsample")
    pm = _equal_size_profiles(sm, mu, k, gen, n_users)[users]
    pn = _equal_size_profiles(sn, nu, k, gen, n_users)[users]
    ones = np.ones(len(users))
    prof = _ClusteredAUC(pm, users, ones, pn, users, ones)
    auc_u = prof.estimate()
    se_u = prof.bootstrap_se(int(n_bootstrap), rng(seed, "membership", "user", "bootstrap"))
    return {
        "auc_user": auc_u,
        "auc_interaction": auc_i,
        "auc_user_se": se_u,
        "auc_interaction_se": se_i,
        "n_users": float(len(users)),
        "n_members": float(len(mu)),
        "n_nonmembers": float(len(nu)),
    }


def membership_sets(request: ForgetRequest, train: Dataset, heldout: Dataset
                    ) -> tuple[Dataset, Dataset]:
    """Members and non-members of a forget request.

    Args:
        request: the forget request.
        train: the training data the original model learnt from (before the request).
        heldout: rows no model trains on, e.g. the test split (same id space).

    Returns:
        ``(members, nonmembers)``: the training rows the request removes, and the held-out
        rows of the request's scope: rows of the requested users and of the users named in
        requested pairs, and rows of the requested items. Held-out rows whose (user, item)
        pair also occurs in ``train`` are dropped (duplicates would be trained members).

    Raises:
        DataFormatError: ``train`` and ``heldout`` have different id spaces.
        InvalidRequestError: the request names ids or pairs not in ``train``.
    """
    if (train.n_users, train.n_items) != (heldout.n_users, heldout.n_items):
        raise DataFormatError(f"training data {train.name!r} and held-out data "
                              f"{heldout.name!r} must share one id space")
    members = train.select(request.row_mask(train), name=f"{train.name}:members")
    scope_users = np.union1d(request.users, request.pairs[:, 0]).astype(np.int64)
    scope = np.isin(heldout.users, scope_users) | np.isin(heldout.items, request.items)
    scope &= ~np.isin(heldout.pair_keys(), train.pair_keys())
    return members, heldout.select(scope, name=f"{heldout.name}:nonmembers")
