"""Group-fairness criteria as linear constraints on per-group confusion matrices.

Each criterion is a set of constraints ``c = (a, k, S)``: the share of predictions ``k``
among group ``a`` within the event ``S`` equals that of everyone within ``S``,

    d_c(h) = P(h = k | A = a, S) − P(h = k | S),    |d_c| ≤ ξ,

with ``S`` everything (**demographic parity**, ``dp``), ``{Y = k}`` (**equal
opportunity**, ``eop``: each class's true-positive rate equal across groups), or
``{Y = y}`` for every ``y`` (**equalized odds**, ``eodds``: the whole confusion matrix).
Given a model of ``P(A, Y | x)``, ``d_c(h) = E_x[h_k(x) w_c(x)]`` with the weight
``w_c(x) = P(A = a, S | x) / P(A = a, S) − P(S | x) / P(S)``, linear in ``h``; that is
what makes the optimal fair classifier a closed form (:mod:`~trustrec.fairclf.optfair`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trustrec.errors import ConfigError

CRITERIA = ("dp", "eop", "eodds")


@dataclass(frozen=True)
class Constraints:
    """The constraints of a criterion for ``n_groups`` × ``n_classes``.

    Attributes:
        criterion: ``dp``, ``eop`` or ``eodds``.
        group: ``(C,)`` the group ``a`` of each constraint.
        pred: ``(C,)`` the predicted class ``k``.
        cond: ``(C,)`` the conditioning class ``y`` of ``S = {Y = y}``; −1: no condition.
    """

    criterion: str
    group: np.ndarray
    pred: np.ndarray
    cond: np.ndarray

    def __len__(self) -> int:
        return len(self.group)


def constraints(criterion: str, n_groups: int, n_classes: int) -> Constraints:
    """Every constraint of ``criterion`` (see the module docstring).

    Raises:
        ConfigError: an unknown criterion (with the closest name).
    """
    from trustrec.config import suggest

    if criterion not in CRITERIA:
        raise ConfigError(f"unknown fairness criterion {criterion!r}"
                          f"{suggest(str(criterion), list(CRITERIA))}")
    a, k = np.meshgrid(np.arange(n_groups), np.arange(n_classes), indexing="ij")
    a, k = a.ravel(), k.ravel()
    if criterion == "dp":
        return Constraints(criterion, a, k, np.full(len(a), -1))
    if criterion == "eop":
        return Constraints(criterion, a, k, k.copy())
    a3, k3, y3 = (m.ravel() for m in np.meshgrid(np.arange(n_groups), np.arange(n_classes),
                                                 np.arange(n_classes), indexing="ij"))
    return Constraints(criterion, a3, k3, y3)


def weights(cons: Constraints, joint: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``(n, C)`` weights ``w_c(x)`` from a model's ``P(A, Y | x)`` (``joint``, shape
    ``(n, n_groups, n_classes)``) and the population's ``P(A, Y)`` (``prior``)."""
    cond = cons.cond
    if np.any(cond >= 0):
        y = np.where(cond >= 0, cond, 0)
        p_as_x = np.where(cond >= 0, joint[:, cons.group, y],
                          joint.sum(2)[:, cons.group])
        p_as = np.where(cond >= 0, prior[cons.group, y], prior.sum(1)[cons.group])
        p_s_x = np.where(cond >= 0, joint.sum(1)[:, y], 1.0)
        p_s = np.where(cond >= 0, prior.sum(0)[y], 1.0)
    else:
        p_as_x = joint.sum(2)[:, cons.group]
        p_as = prior.sum(1)[cons.group]
        p_s_x, p_s = np.ones_like(p_as_x), np.ones_like(p_as)
    return p_as_x / np.maximum(p_as, 1e-12) - p_s_x / np.maximum(p_s, 1e-12)


def confusion_counts(pred: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int,
                     n_classes: int) -> np.ndarray:
    """``(n_groups, n_classes, n_classes)`` row counts per (group, label, prediction) —
    all a client uploads for the server to measure disparities."""
    pred, y, group = (np.asarray(v, dtype=np.int64) for v in (pred, y, group))
    for what, v, n in (("prediction", pred, n_classes), ("label", y, n_classes),
                       ("group", group, n_groups)):
        if len(v) and (v.min() < 0 or v.max() >= n):
            raise ConfigError(f"a {what} outside 0..{n - 1}: {int(v.min())}..{int(v.max())}")
    cell = (group * n_classes + y) * n_classes + pred
    return np.bincount(cell, minlength=n_groups * n_classes * n_classes).reshape(
        n_groups, n_classes, n_classes)


def disparities_from_counts(cons: Constraints, counts: np.ndarray, min_rows: int = 1
                            ) -> np.ndarray:
    """``(C,)`` realised ``d_c`` from :func:`confusion_counts` (NaN where the event has no
    row or the group holds fewer than ``min_rows`` rows of it: a rate over a handful of
    rows is noise, not a disparity)."""
    c = counts.astype(np.float64)
    has = cons.cond >= 0
    y = np.where(has, cons.cond, 0)
    num_as = np.where(has, c[cons.group, y, cons.pred], c[cons.group, :, cons.pred].sum(1))
    den_as = np.where(has, c[cons.group, y].sum(-1), c[cons.group].sum((1, 2)))
    num_s = np.where(has, c[:, y, cons.pred].sum(0), c[:, :, cons.pred].sum((0, 1)))
    den_s = np.where(has, c[:, y].sum((0, 2)), c.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        d = num_as / den_as - num_s / den_s
    return np.where((den_as >= max(1, min_rows)) & (den_s > 0), d, np.nan)


def disparities(cons: Constraints, pred: np.ndarray, y: np.ndarray, group: np.ndarray,
                n_classes: int, min_rows: int = 1) -> np.ndarray:
    """``(C,)`` realised ``d_c`` of hard predictions ``pred`` against the true labels and
    groups (NaN as in :func:`disparities_from_counts`)."""
    n_groups = int(max(cons.group.max(), np.max(group, initial=0))) + 1
    return disparities_from_counts(cons, confusion_counts(pred, y, group, n_groups, n_classes),
                                   min_rows)


def max_disparity(cons: Constraints, pred: np.ndarray, y: np.ndarray, group: np.ndarray,
                  n_classes: int, min_rows: int = 1) -> float:
    """The largest ``|d_c|`` (the figure ξ bounds) over the measurable constraints (NaN
    when none is)."""
    d = np.abs(disparities(cons, pred, y, group, n_classes, min_rows))
    return float(np.nanmax(d)) if np.isfinite(d).any() else float("nan")


def max_gap(cons: Constraints, pred: np.ndarray, y: np.ndarray, group: np.ndarray,
            n_classes: int, min_rows: int = 1) -> float:
    """The largest between-group difference ``max_a − min_a`` of ``P(h = k | A = a, S)``
    over the criterion's ``(k, S)`` (fairlearn's demographic-parity / equalized-odds
    *difference* for a binary label; ≤ 2 · :func:`max_disparity`), over groups with at
    least ``min_rows`` rows of ``S``."""
    rates: dict[tuple[int, int], list[float]] = {}
    for a, k, c in zip(cons.group, cons.pred, cons.cond, strict=True):
        in_as = (group == a) & (np.ones(len(y), dtype=bool) if c < 0 else (y == c))
        if in_as.sum() >= max(1, min_rows):
            rates.setdefault((int(k), int(c)), []).append(float(np.mean(pred[in_as] == k)))
    gaps = [max(v) - min(v) for v in rates.values() if len(v) > 1]
    return max(gaps) if gaps else float("nan")
