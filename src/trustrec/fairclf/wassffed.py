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
pooled mixture, not the barycenter); ``tests/fairclf/test_wassffed.py`` checks both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from trustrec.config import NonNegativeInt, PositiveInt, UnitInterval, typed_config
from trustrec.errors import ConfigError
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import (
    ClassifierConfig,
    LocalTask,
    Params,
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
    quantiles: PositiveInt = 101


def barycenter_targets(scores: Sequence[np.ndarray], groups: Sequence[np.ndarray],
                       n_groups: int, quantiles: int = 101) -> list[np.ndarray]:
    """Each row's barycenter target ``Q̄(F_a(s))`` from per-client scores and groups,
    computed only from per-(client, group) quantile sketches (module docstring, steps
    1–3)."""
    levels = np.linspace(0.0, 1.0, quantiles)
    sketches: dict[tuple[int, int], np.ndarray] = {}
    sizes = np.zeros((len(scores), n_groups))
    for k, (s, g) in enumerate(zip(scores, groups, strict=True)):
        for a in range(n_groups):
            sa = s[g == a]
            sizes[k, a] = len(sa)
            if len(sa):
                sketches[k, a] = np.quantile(sa, levels)
    grid = np.unique(np.concatenate(list(sketches.values())))
    cdf = np.zeros((n_groups, len(grid)))
    for (k, a), q in sketches.items():
        cdf[a] += sizes[k, a] * _cdf(q, levels, grid)
    n_a = sizes.sum(0)
    present = n_a > 0
    cdf[present] /= n_a[present, None]
    quant = np.stack([np.interp(levels, cdf[a], grid) for a in range(n_groups) if present[a]])
    bary = (n_a[present, None] * quant).sum(0) / n_a.sum()
    return [np.interp(_group_cdf(s, g, grid, cdf), levels, bary)
            for s, g in zip(scores, groups, strict=True)]


def _cdf(q: np.ndarray, levels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The CDF of a quantile sketch on ``grid`` (0 below its minimum, 1 above its max)."""
    return np.interp(grid, q, levels, left=0.0, right=1.0)


def _group_cdf(s: np.ndarray, g: np.ndarray, grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """``F_{g_i}(s_i)`` per row."""
    out = np.empty(len(s))
    for a in np.unique(g):
        rows = g == a
        out[rows] = np.interp(s[rows], grid, cdf[a])
    return out


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
    xs = fed.x("train")
    labels = [one_hot(d.y[r], 2) for r in fed.train]
    groups = [d.group[r] for r in fed.train]
    plain = [LocalTask(t) for t in labels]

    def tasks(r: int, params: Params) -> list[LocalTask]:
        if r < cfg.warmup:
            return plain
        scores = [predict_proba(params, x)[:, 1] for x in xs]
        targets = barycenter_targets(scores, groups, d.n_groups, cfg.quantiles)
        return [LocalTask(cfg.alpha * lab, torch.from_numpy(t.astype(np.float32)),
                          1.0 - cfg.alpha)
                for lab, t in zip(labels, targets, strict=True)]

    return fit_federated_classifier(xs, tasks, 2, clf, seed, on_round=on_round)
