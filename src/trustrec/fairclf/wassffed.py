"""WassFFed: Wasserstein fair federated learning (Han, Zhang, Chen et al., arXiv 2411.06881),
binary classification.

After ``warmup`` rounds of plain FedAvg, every round:

1. each client scores its training rows with the global model (``s = P(Y = 1 | x)``) and
   uploads, per group, a **quantile sketch** (the scores' quantiles at ``quantiles``
   evenly spaced levels) and the group's row count — not the raw scores (the released
   code sends every score; a sketch is the privacy-preserving replacement);
2. the server merges each group's sketches into the group's federation-wide CDF
   ``F_a = Σ_k (n_{k,a}/n_a) F_{k,a}`` (the group's distribution *is* the mixture of its
   clients'), inverts it to the quantile function ``Q_a``, and forms the 1-D
   Wasserstein-2 **barycenter** of the groups by averaging quantile functions,
   ``Q̄ = Σ_a (n_a/n) Q_a``; it broadcasts ``F_a`` and ``Q̄`` (on the sketch grid);
3. each row's target is the barycenter's quantile at the row's rank within its group,
   ``t = Q̄(F_a(s))`` — monotone in ``s`` within a group, so ranks are preserved — and
   clients minimise ``α·CE + (1 − α)·|P(Y = 1 | x) − t|``, then FedAvg.

If every group's scores followed ``Q̄``, any threshold would give every group the same
positive rate (demographic parity at every threshold).

The released code's two bugs are not reproduced: it indexes targets by ``argsort``
instead of rank (targets shuffled within a group) and averages CDFs across groups (the
pooled mixture, not the barycenter); ``tests/fairclf/test_federated_fair.py`` checks
both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from trustrec.config import NonNegativeInt, UnitInterval, typed_config
from trustrec.errors import ConfigError
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import (
    ClassifierConfig,
    ClientState,
    LocalTask,
    Params,
    RoundProtocol,
    Stats,
    fit_federated_classifier,
    one_hot,
    predict_proba,
)


@typed_config
class WassFFedConfig:
    """WassFFed's options.

    Attributes:
        warmup: rounds of plain FedAvg before the barycenter term starts (counted in the
            classifier's rounds).
        alpha: weight of the cross-entropy; ``1 − alpha`` weighs the pull to the targets.
        quantiles: levels per (client, group) sketch.
    """

    warmup: NonNegativeInt = 10
    alpha: UnitInterval = 0.5
    quantiles: Annotated[int, Field(ge=2)] = 101


def group_sketch(scores: np.ndarray, groups: np.ndarray, n_groups: int, quantiles: int
                 ) -> Stats:
    """Client side (step 1): per group, the scores' quantiles at ``quantiles`` evenly
    spaced levels (NaN for a group the client lacks) and the group's row count."""
    levels = np.linspace(0.0, 1.0, quantiles)
    q = np.full((n_groups, quantiles), np.nan)
    n = np.zeros(n_groups)
    for a in range(n_groups):
        sa = scores[groups == a]
        n[a] = len(sa)
        if len(sa):
            q[a] = np.quantile(sa, levels)
    return {"quantiles": q, "counts": n}


def merge_sketches(sketches: Sequence[Stats]) -> Stats:
    """Server side (step 2): each group's CDF ``F_a`` on the union of the sketch values
    (``grid``, ``cdf``) and the barycenter's quantile function ``Q̄`` (``bary``, at the
    sketch levels)."""
    q = np.stack([s["quantiles"] for s in sketches])  # (K, G, Q)
    n = np.stack([s["counts"] for s in sketches])  # (K, G)
    levels = np.linspace(0.0, 1.0, q.shape[2])
    grid = np.unique(q[np.isfinite(q)])
    cdf = np.zeros((q.shape[1], len(grid)))
    for k, a in zip(*np.nonzero(n), strict=True):
        cdf[a] += n[k, a] * _cdf(q[k, a], levels, grid)
    n_a = n.sum(0)
    present = n_a > 0
    cdf[present] /= n_a[present, None]
    quant = np.stack([_quantile(levels, cdf[a], grid, np.nanmin(q[:, a, 0]),
                                np.nanmax(q[:, a, -1])) for a in np.flatnonzero(present)])
    bary = (n_a[present, None] * quant).sum(0) / n_a.sum()
    return {"grid": grid, "cdf": cdf, "bary": bary}


def sketch_targets(scores: np.ndarray, groups: np.ndarray, shared: Stats) -> np.ndarray:
    """Client side (step 3): each row's target ``Q̄(F_a(s))``."""
    levels = np.linspace(0.0, 1.0, len(shared["bary"]))
    rank = np.empty(len(scores))
    for a in np.unique(groups):
        rows = groups == a
        rank[rows] = np.interp(scores[rows], shared["grid"], shared["cdf"][a])
    return np.interp(rank, levels, shared["bary"])


def barycenter_targets(scores: Sequence[np.ndarray], groups: Sequence[np.ndarray],
                       n_groups: int, quantiles: int = 101) -> list[np.ndarray]:
    """Each row's barycenter target from per-client scores and groups, computed only from
    per-(client, group) quantile sketches (module docstring, steps 1–3)."""
    shared = merge_sketches([group_sketch(s, g, n_groups, quantiles)
                             for s, g in zip(scores, groups, strict=True)])
    return [sketch_targets(s, g, shared) for s, g in zip(scores, groups, strict=True)]


def _quantile(levels: np.ndarray, cdf: np.ndarray, grid: np.ndarray, low: float, high: float
              ) -> np.ndarray:
    """A group's quantile function from its CDF on ``grid``, inverted over the group's own
    range ``[low, high]`` (outside it the CDF is flat at 0 or 1 and would send the top
    level to another group's maximum)."""
    own = (grid >= low) & (grid <= high)
    return np.interp(levels, cdf[own], grid[own])


def _cdf(q: np.ndarray, levels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The CDF of a quantile sketch on ``grid`` (0 below its minimum, 1 above its max)."""
    return np.interp(grid, q, levels, left=0.0, right=1.0)


class WassFFedRounds(RoundProtocol):
    """WassFFed's rounds: plain FedAvg during warm-up; then sketches up, barycenter down,
    targets and the mixed loss at the clients."""

    uses_stats = True

    def __init__(self, fed: FairFederation, cfg: WassFFedConfig) -> None:
        super().__init__(fed.x("train"))
        d = fed.data
        self.cfg, self.n_groups = cfg, d.n_groups
        self.labels = [one_hot(d.y[r], 2) for r in fed.train]
        self.groups = [d.group[r] for r in fed.train]

    def _scores(self, client: int, params: Params) -> np.ndarray:
        return predict_proba(params, self.x[client])[:, 1]

    def client_stats(self, client: int, round_: int, params: Params, state: ClientState
                     ) -> Stats:  # noqa: D102
        if round_ < self.cfg.warmup:
            return {}
        # kept for this round's task: the same model scores the same rows
        state["scores"] = self._scores(client, params)
        return group_sketch(state["scores"], self.groups[client], self.n_groups,
                            self.cfg.quantiles)

    def broadcast(self, round_: int, params: Params, stats: list[Stats]) -> Stats:  # noqa: D102
        return merge_sketches(stats) if round_ >= self.cfg.warmup else {}

    def client_task(self, client: int, round_: int, params: Params, shared: Stats,
                    state: ClientState) -> LocalTask:  # noqa: D102
        if round_ < self.cfg.warmup:
            return LocalTask(self.labels[client])
        scores = state.pop("scores", None)
        if scores is None:
            scores = self._scores(client, params)
        t = sketch_targets(scores, self.groups[client], shared)
        return LocalTask(self.cfg.alpha * self.labels[client],
                         torch.from_numpy(t.astype(np.float32)), 1.0 - self.cfg.alpha)


def fit_wassffed(fed: FairFederation, cfg: WassFFedConfig, clf: ClassifierConfig, seed: int,
                 *, on_round=None) -> Params:
    """Train WassFFed (see the module docstring).

    Raises:
        ConfigError: a label with more than two classes, or warm-up not shorter than the
            rounds.
    """
    d = fed.data
    if d.n_classes != 2:
        raise ConfigError(f"WassFFed is binary; {d.name}'s label {d.label!r} has "
                          f"{d.n_classes} classes")
    if cfg.warmup >= clf.rounds:
        raise ConfigError(f"WassFFed's warm-up ({cfg.warmup} rounds) must be shorter than "
                          f"the {clf.rounds} rounds")
    return fit_federated_classifier(WassFFedRounds(fed, cfg), 2, clf, seed, on_round=on_round)
