"""The completeness suite: several membership attacks per forget request, strongest first.

A completeness figure must fail a method that does nothing, or one that only hides the
obvious trace. A single attack on the forgotten user's own score row is passed by zeroing
that row; the suite therefore runs several attacks, each from another angle, on the same
members (the forgotten training rows) and non-members (held-out rows of the request's
scope, :func:`~trustrec.evaluate.membership.membership_sets`), and reports the strongest.

Attacks (each gives a per-row signal, higher = more member-like; every signal is turned
into a user-level and an interaction-level AUC by
:func:`~trustrec.evaluate.membership.signal_aucs`, user-cluster bootstrap SEs):

* ``row`` — **score row**: the rank percentile of the item in the user's unmasked score
  row (:func:`~trustrec.evaluate.membership.rank_percentiles`). SCIF's membership oracle
  in its simplest form.
* ``foldin`` — **fold-in**: the attacker ignores the model's row of the forgotten entity
  and re-derives it from the *released other side* and the candidate rows (members and
  non-members together, unlabelled), by an ALS solve (:func:`~trustrec.evaluate.foldin.
  fold_in`); the signal is the candidate's rank percentile under the folded-in vector.
  For a user or interaction request users are folded in from the item table; for an item
  request items are folded in from the user table (the percentile is then the user's rank
  in the item's column). An item table trained on a user's rows has moved towards that
  user, so the user's member items score above its non-member items; after retraining
  the two are exchangeable. Methods with several released tables (shard ensembles) give
  the mean percentile over their tables.
* ``reference`` — **reference-calibrated fold-in** (a shadow model, in the spirit of
  SCIF's MIO and of Chen et al., "When machine unlearning jeopardizes privacy", CCS
  2021, and of difficulty calibration, Watson et al., ICLR 2022): the fold-in signal minus
  the same signal under a *reference* model of the same kind that never saw the forget
  set (the auditor's shadow: trained on the remaining data with an independent seed).
  Subtracting the reference removes how easy a row is for any model (popular items rank
  high everywhere), so what is left is what the audited model knows beyond a model that
  never saw the rows.

The **headline** (``mia_auc``) is the attack × level with the largest ``|AUC − 0.5|``,
with its standard error and a 95 % normal interval; ``mia_attack`` is its index in
:data:`ATTACKS` (``row/user, row/interaction, foldin/user, ...``). An AUC far *below* 0.5
is information too (the attacker flips its answer), so the distance is two-sided. Since the
headline is a maximum over six correlated estimates, a model that never saw the forget set
reads slightly above 0.5 on average: compare a method with the ``retrain`` cell of the same
group, and see the report for how to read the suite.

Costs: one score pass over the scope users per score source (target, reference), one
batched ``d × d`` solve per scope entity per released table; no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.evaluate.foldin import fold_in
from trustrec.evaluate.membership import (
    check_bootstrap,
    paired_rows,
    rank_percentiles,
    signal_aucs,
)

#: Signals of the suite, in report order.
SIGNALS: tuple[str, ...] = ("row", "foldin", "reference")
#: ``signal/level`` of every AUC the headline is chosen from; ``mia_attack`` indexes this.
ATTACKS: tuple[str, ...] = tuple(f"{s}/{lvl}" for s in SIGNALS
                                 for lvl in ("user", "interaction"))
#: Fewer users with both member and non-member rows than this: the cell is flagged
#: degenerate (its AUCs rest on a handful of profiles).
MIN_USERS = 10


def released_tables(source: object, side: str) -> list[np.ndarray]:
    """The released ``side`` tables (``"user"`` / ``"item"``) of a score source.

    A source with several sub-models offers ``released_tables(side)`` (shard ensembles);
    otherwise its ``user_embeddings()`` / ``item_embeddings()``; a plain score function has
    none (the fold-in attacks are then skipped, NaN).
    """
    hook = getattr(source, "released_tables", None)
    if callable(hook):
        return [np.asarray(t) for t in hook(side)]
    getter = getattr(source, f"{side}_embeddings", None)
    return [np.asarray(getter())] if callable(getter) else []


def _fold_in_percentiles(source: object, users: np.ndarray, items: np.ndarray,
                         n_users: int, n_items: int, side: str, seed: int) -> np.ndarray:
    """Mean rank percentile of each candidate row under the folded-in entity (NaN: none)."""
    other = "item" if side == "user" else "user"
    tables = released_tables(source, other)
    if not tables:
        return np.full(len(users), np.nan)
    ent, cand, n_ent = (users, items, n_users) if side == "user" else (items, users, n_items)
    total = np.zeros(len(users))
    for table in tables:
        table = np.asarray(table, dtype=np.float64)
        x = fold_in(table, ent, cand, n_ent)
        score: Callable[[np.ndarray], np.ndarray] = lambda e, x=x, t=table: x[e] @ t.T  # noqa: E731
        total += rank_percentiles(score, ent, cand, n_items=len(table), seed=seed)
    return total / len(tables)


def completeness_suite(model: object, members: Dataset, nonmembers: Dataset, *,
                       reference: object | None = None, side: str = "user", seed: int = 0,
                       n_bootstrap: int = 200) -> dict[str, float]:
    """Every attack of the suite on one model (see the module docstring).

    Args:
        model: the audited score source (an Unlearner, a Recommender, a score function).
        members: the forgotten training rows.
        nonmembers: held-out rows of the request's scope (same id space).
        reference: a score source of the same kind that never saw the members (the
            auditor's shadow); None skips the ``reference`` attack (NaN).
        side: which entity the fold-in re-derives: ``"user"`` (user and interaction
            requests) or ``"item"`` (item requests).
        seed: root seed of tie-breaking, profile subsampling and bootstrap.
        n_bootstrap: user-cluster bootstrap replicates of the standard errors.

    Returns:
        Flat metrics: ``mia_auc_user``, ``mia_auc_interaction`` (+ ``_se``; the score-row
        attack), ``mia_foldin_auc_user`` ... ``mia_reference_auc_interaction_se``, the
        headline ``mia_auc``, ``mia_auc_se``, ``mia_auc_lo``, ``mia_auc_hi``,
        ``mia_attack``, ``mia_degenerate`` (1 when fewer than :data:`MIN_USERS` users
        take part), and ``mia_n_users``, ``mia_n_members``, ``mia_n_nonmembers``.

    Raises:
        DataFormatError: members and non-members have different id spaces.
        ValueError: an unknown ``side``.
    """
    if side not in ("user", "item"):
        raise ValueError(f"side must be 'user' or 'item', got {side!r}")
    check_bootstrap(n_bootstrap)
    mu, mi, nu, ni = paired_rows(members, nonmembers)
    n_users, n_items = members.n_users, members.n_items
    users, items = np.concatenate([mu, nu]), np.concatenate([mi, ni])
    n_m = len(mu)
    signals = {"row": rank_percentiles(model, users, items, n_items=n_items, seed=seed),
               "foldin": _fold_in_percentiles(model, users, items, n_users, n_items, side,
                                              seed)}
    signals["reference"] = (
        signals["foldin"] - _fold_in_percentiles(reference, users, items, n_users, n_items,
                                                 side, seed)
        if reference is not None else np.full(len(users), np.nan))
    out: dict[str, float] = {}
    best = (-1.0, float("nan"), float("nan"), -1)
    for s in SIGNALS:
        sig = signals[s]
        prefix = "mia_" if s == "row" else f"mia_{s}_"
        res = signal_aucs(sig[:n_m], mu, sig[n_m:], nu, n_users, seed=seed,
                          n_bootstrap=n_bootstrap)
        for level in ("user", "interaction"):
            auc, se = res[f"auc_{level}"], res[f"auc_{level}_se"]
            out[f"{prefix}auc_{level}"], out[f"{prefix}auc_{level}_se"] = auc, se
            if np.isfinite(auc) and abs(auc - 0.5) > best[0]:
                best = (abs(auc - 0.5), auc, se, ATTACKS.index(f"{s}/{level}"))
        if s == "row":
            out.update({f"mia_{k}": res[k] for k in ("n_users", "n_members", "n_nonmembers")})
    _, auc, se, idx = best
    half = 1.959964 * se if np.isfinite(se) else float("nan")
    out.update({"mia_auc": auc, "mia_auc_se": se, "mia_auc_lo": auc - half,
                "mia_auc_hi": auc + half, "mia_attack": float(idx),
                "mia_degenerate": float(out["mia_n_users"] < MIN_USERS)})
    return out


def attack_name(index: float) -> str:
    """The ``signal/level`` name of a ``mia_attack`` value (``"–"`` when undefined)."""
    return ATTACKS[int(index)] if np.isfinite(index) and 0 <= index < len(ATTACKS) else "–"
