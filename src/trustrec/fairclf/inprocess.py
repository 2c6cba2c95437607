"""Fair in-processing by cost-sensitive training and dual ascent: OptFair's in-processing
(one client, global constraint only) and FedFACT's (clients, global and local
constraints), one code path.

With the attribute and label known at training time, each constraint is
``d_c(h) = E[h_{k_c}(x) w_c(A, Y)]`` with ``w_c(a, y) = 1{a, S}/P(a, S) − 1{S}/P(S)``
(:func:`~trustrec.fairclf.criteria.weights` on one-hot cells). The Lagrangian's best
response is the classifier maximising the gain ``G_j(a, y) = 1{y = j} − Σ_{c: k_c = j}
(λ_c w^g_c(a, y) + μ_{k,c} w^{l,k}_c(a, y))``, trained by cost-sensitive cross-entropy
``−Σ_j Ḡ_j(a, y) log softmax_j(x)`` with ``Ḡ = G + κ`` shifted non-negative (the paper's
``M̄ = M + κ·1``, κ the smallest that makes the client's (group, label) table
non-negative), then divided by one constant per client (its rows' mean target total
becomes 1: the optimum's argmax is unchanged, and the 1/P(a, S) weights of a small group
cannot blow the step up). Each round:

1. clients train the shared model on their cost-sensitive targets (FedAvg);
2. each client counts its hard predictions per (group, event) on its training rows; the
   server sums the counts into the global disparities ``d^g`` and steps
   ``λ ← soft(λ + η d^g, η ξ_g)`` (projected dual ascent on the ℓ1-penalised dual); each
   client steps its own ``μ_k ← soft(μ_k + η d^{l,k}, η ξ_l)`` and keeps it.

Only per-(group, label, prediction) counts travel (as in FedFACT); μ_k stays home.
Disparities of cells with fewer than
:data:`~trustrec.fairclf.federation.MIN_GROUP_ROWS` rows do not move the duals (noise). The
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
from trustrec.fairclf.criteria import (
    CRITERIA,
    confusion_counts,
    constraints,
    disparities_from_counts,
    weights,
)
from trustrec.fairclf.dual import shift
from trustrec.fairclf.federation import MIN_GROUP_ROWS, FairFederation
from trustrec.federated.classify import (
    ClassifierConfig,
    ClientState,
    LocalTask,
    Params,
    RoundProtocol,
    Stats,
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
        dual_lr: the dual ascent step η (0.5: on the development split seeds 0–1,
            ``benchmarks/tune_fedclf.py``, η = 2 oscillated between the constraint's sides
            and 0.25–1 settled within 0.004 of ξ on average).
    """

    criterion: Annotated[str, one_of(CRITERIA, "fairness criterion")] = "dp"
    xi: NonNegativeFloat = 0.02
    xi_local: NonNegativeFloat | None = None
    dual_lr: PositiveFloat = 0.5


def _soft(v: np.ndarray, t: float) -> np.ndarray:
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


class FairInRounds(RoundProtocol):
    """The in-processing rounds: each client uploads its confusion counts under the
    current model and steps its own μ_k; the server steps λ from the summed counts and
    broadcasts it; clients train on their cost-sensitive targets. The first round has no
    dual step (λ = μ = 0)."""

    uses_stats = True

    def __init__(self, fed: FairFederation, cfg: FairInConfig) -> None:
        super().__init__(fed.x("train"))
        d = fed.data
        self.cfg, self.n_g, self.n_y = cfg, d.n_groups, d.n_classes
        self.cons = constraints(cfg.criterion, d.n_groups, d.n_classes)
        cells = np.eye(self.n_g * self.n_y).reshape(-1, self.n_g, self.n_y)
        counts = [np.bincount(d.group[r] * self.n_y + d.y[r], minlength=self.n_g * self.n_y)
                  .reshape(self.n_g, self.n_y) for r in fed.train]
        total = sum(counts)
        # The population's P(A, Y): one secure sum of the clients' label counts.
        self.w_global = weights(self.cons, cells, total / total.sum())
        self.w_local = [weights(self.cons, cells, c / c.sum()) for c in counts]
        self.y = [d.y[r] for r in fed.train]
        self.group = [d.group[r] for r in fed.train]
        self.onehot = np.eye(self.n_y)[np.arange(self.n_g * self.n_y) % self.n_y]
        self.lam = np.zeros(len(self.cons))

    def client_stats(self, client: int, round_: int, params: Params, state: ClientState
                     ) -> Stats:  # noqa: D102
        pred = predict_proba(params, self.x[client]).argmax(1)
        counts = confusion_counts(pred, self.y[client], self.group[client], self.n_g, self.n_y)
        mu = state.setdefault("mu", np.zeros(len(self.cons)))
        if round_ > 0 and self.cfg.xi_local is not None:
            d_local = np.nan_to_num(disparities_from_counts(self.cons, counts,
                                                            MIN_GROUP_ROWS))
            state["mu"] = _soft(mu + self.cfg.dual_lr * d_local,
                                self.cfg.dual_lr * self.cfg.xi_local)
        return {"counts": counts}

    def broadcast(self, round_: int, params: Params, stats: list[Stats]) -> Stats:  # noqa: D102
        if round_ > 0:
            d_global = np.nan_to_num(disparities_from_counts(
                self.cons, sum(s["counts"] for s in stats), MIN_GROUP_ROWS))
            self.lam = _soft(self.lam + self.cfg.dual_lr * d_global,
                             self.cfg.dual_lr * self.cfg.xi)
        return {"lambda": self.lam.copy()}

    def client_task(self, client: int, round_: int, params: Params, shared: Stats,
                    state: ClientState) -> LocalTask:  # noqa: D102
        mu = state.get("mu", np.zeros(len(self.cons)))
        gain = (self.onehot - shift(self.w_global, shared["lambda"], self.cons.pred, self.n_y)
                - shift(self.w_local[client], mu, self.cons.pred, self.n_y))
        gain = gain + max(0.0, -float(gain.min()))
        cell = self.group[client] * self.n_y + self.y[client]
        # One scale per client (the mean row total 1): the argmax of the cost-sensitive
        # optimum is unchanged, and a small group's large weights cannot blow the step up.
        gain = gain / gain[cell].sum(1).mean()
        return LocalTask(torch.from_numpy(gain.astype(np.float32))[torch.from_numpy(cell)])


def fit_fair_inprocess(fed: FairFederation, cfg: FairInConfig, clf: ClassifierConfig,
                       seed: int, *, on_round: Callable[[int, Params], None] | None = None
                       ) -> tuple[Params, np.ndarray]:
    """Train the fair model (see the module docstring).

    Args:
        fed: the federation (one client: centralised OptFair in-processing).
        cfg: fairness options.
        clf: the classifier and FedAvg options.
        seed: root seed.
        on_round: called after each round with ``(round, params)``.

    Returns:
        The model and the global multipliers λ of the last round.
    """
    rounds = FairInRounds(fed, cfg)
    params = fit_federated_classifier(rounds, fed.data.n_classes, clf, seed, on_round=on_round)
    return params, rounds.lam
