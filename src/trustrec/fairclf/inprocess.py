"""Fair in-processing by cost-sensitive training and dual ascent: OptFair's in-processing
(one client, global constraint only) and FedFACT's (clients, global and local
constraints), one code path.

With the attribute and label known at training time, each constraint is
``d_c(h) = E[h_{k_c}(x) w_c(A, Y)]`` with ``w_c(a, y) = 1{a, S}/P(a, S) − 1{S}/P(S)``
(:func:`~trustrec.fairclf.criteria.weights` on one-hot cells). The Lagrangian's best
response is the classifier maximising the gain ``G_j(a, y) = 1{y = j} − Σ_{c: k_c = j}
(λ_c w^g_c(a, y) + μ_{k,c} w^{l,k}_c(a, y))``, trained by cost-sensitive cross-entropy
``−Σ_j Ḡ_j(a, y) log softmax_j(x)`` with ``Ḡ = G + κ`` shifted non-negative (the paper's
``M̄ = M + κ·1``, κ the client's smallest κ that does it). Each round:

1. clients train the shared model on their cost-sensitive targets (FedAvg);
2. each client counts its hard predictions per (group, event) on its training rows; the
   server sums the counts into the global disparities ``d^g`` and steps
   ``λ ← soft(λ + η d^g, η ξ_g)`` (projected dual ascent on the ℓ1-penalised dual); each
   client steps its own ``μ_k ← soft(μ_k + η d^{l,k}, η ξ_l)`` and keeps it.

Only per-(group, event) prediction counts travel (as in FedFACT); μ_k stays home. The
model stays attribute-blind at prediction time. The population ``P(A, Y)`` in ``w^g`` is
the summed training counts.

Departures: FedFACT's in-processing also trains a personal head φ_k mixed with the shared
model by a learned weight; here every client uses the shared model (the local block is
enforced through μ_k's costs alone), which keeps one model to evaluate and to compare with
post-processing. The dual step η is constant (the released OptFair code declares a
scheduler it never steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import numpy as np
import torch

from trustrec.config import NonNegativeFloat, PositiveFloat, one_of, typed_config
from trustrec.fairclf.criteria import CRITERIA, constraints, disparities, weights
from trustrec.fairclf.dual import shift
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import (
    ClassifierConfig,
    LocalTask,
    Params,
    fit_federated_classifier,
    predict_proba,
)


@typed_config
class FairInConfig:
    """Fair in-processing's options.

    Attributes:
        criterion: ``dp``, ``eop`` or ``eodds``.
        xi: the global budget ξ_g.
        xi_local: the local budget ξ_l, or None for no local constraint.
        dual_lr: the dual ascent step η.
    """

    criterion: Annotated[str, one_of(CRITERIA, "fairness criterion")] = "dp"
    xi: NonNegativeFloat = 0.02
    xi_local: NonNegativeFloat | None = None
    dual_lr: PositiveFloat = 1.0


def _soft(v: np.ndarray, t: float) -> np.ndarray:
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def fit_fair_inprocess(fed: FairFederation, cfg: FairInConfig, clf: ClassifierConfig,
                       seed: int, *, on_round: Callable[[int, Params, dict], None] | None = None
                       ) -> tuple[Params, dict[str, np.ndarray]]:
    """Train the fair model (see the module docstring).

    Args:
        fed: the federation (one client: centralised OptFair in-processing).
        cfg: fairness options.
        clf: the classifier and FedAvg options.
        seed: root seed.
        on_round: called after each round with ``(round, params, duals)``.

    Returns:
        The model and the final duals (``lambda``; ``mu`` of shape ``(K, C)``).
    """
    d = fed.data
    n_g, n_y = d.n_groups, d.n_classes
    cons = constraints(cfg.criterion, n_g, n_y)
    cells = np.eye(n_g * n_y).reshape(n_g * n_y, n_g, n_y)
    counts = [np.bincount(d.group[r] * n_y + d.y[r], minlength=n_g * n_y).reshape(n_g, n_y)
              for r in fed.train]
    total = sum(counts)
    wg = weights(cons, cells, total / total.sum())
    wl = [weights(cons, cells, c / c.sum()) for c in counts]
    cell_of = [torch.from_numpy(d.group[r] * n_y + d.y[r]) for r in fed.train]
    onehot = np.eye(n_y)[np.arange(n_g * n_y) % n_y]
    lam = np.zeros(len(cons))
    mu = np.zeros((fed.n_clients, len(cons)))
    xs = fed.x("train")

    def tasks(r: int, params: Params) -> list[LocalTask]:
        out = []
        for k in range(fed.n_clients):
            gain = onehot - shift(wg, lam, cons.pred, n_y) - shift(wl[k], mu[k], cons.pred, n_y)
            gain = gain + max(0.0, -float(gain.min()))
            out.append(LocalTask(torch.from_numpy(gain.astype(np.float32))[cell_of[k]]))
        return out

    def dual_step(r: int, params: Params) -> None:
        pred = [predict_proba(params, x).argmax(1) for x in xs]
        y, g, p = fed.pooled("train", pred)
        lam[:] = _soft(lam + cfg.dual_lr * np.nan_to_num(disparities(cons, p, y, g, n_y)),
                       cfg.dual_lr * cfg.xi)
        if cfg.xi_local is not None:
            for k, rows in enumerate(fed.train):
                dk = np.nan_to_num(disparities(cons, pred[k], d.y[rows], d.group[rows], n_y))
                mu[k] = _soft(mu[k] + cfg.dual_lr * dk, cfg.dual_lr * cfg.xi_local)
        if on_round is not None:
            on_round(r, params, {"lambda": lam.copy(), "mu": mu.copy()})

    params = fit_federated_classifier(xs, tasks, n_y, clf, seed, on_round=dual_step)
    return params, {"lambda": lam, "mu": mu}
