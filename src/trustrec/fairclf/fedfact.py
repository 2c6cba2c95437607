"""FedFACT post-processing: the Bayes-optimal classifier under **global and local**
fairness constraints across a federation (Zhang, Han, Feng et al., NeurIPS 2025,
arXiv 2506.03777), multi-class.

1. The federation trains one attribute-blind model of ``P(A, Y | x)`` by FedAvg
   (:func:`fit_joint`; a joint class per (group, label)).
2. Global constraints ``d^g_c(h) = Σ_k p_k E_k[h_{k_c} w^g_c]`` use the federation's
   ``P(A, Y)`` (the population-weighted mean of the clients' model-estimated priors:
   a secure sum); client ``k``'s local constraints ``d^{l,k}_c = E_k[h_{k_c} w^{l,k}_c]``
   use its own. Client ``k`` predicts ``argmax_j β_j`` with
   ``β = η − Σ_c λ_c w^g_c e_{k_c} − Σ_c μ_{k,c} w^{l,k}_c e_{k_c}``
   (the paper's ``M(a, k)`` matrices, written as weights as in
   :mod:`~trustrec.fairclf.optfair`).
3. The duals solve the bilevel problem
   ``min_λ ξ_g ‖λ‖₁ + Σ_k p_k min_{μ_k} [τ E_k lse(β/τ) + ξ_l ‖μ_k‖₁]`` on each
   client's **held-out** rows: the server runs L-BFGS-B on λ; each evaluation is one
   communication round in which every client solves its own μ_k (warm-started, at the
   server's current temperature) and returns its value and ``p_k d^{g,k}`` — by
   Danskin's theorem the outer gradient is ``ξ_g sign − Σ_k p_k d^{g,k}``; a last round
   solves every μ_k at the final λ. μ_k never leaves its client. ``xi_local = None``
   drops the local block (then one client is exactly
   :class:`~trustrec.fairclf.optfair.OptFairPost`'s dual).

Departures: the paper's outer solver is projected (sub)gradient descent with an
``O(1/√T)`` rate; L-BFGS-B on the split dual reaches the same optimum in far fewer rounds
(the number used is reported as ``rounds_``). The temperature continuation is
:mod:`~trustrec.fairclf.dual`'s.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from scipy.special import logsumexp

from trustrec.config import (
    Configured,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    one_of,
    typed_config,
)
from trustrec.errors import ConfigError
from trustrec.fairclf.criteria import CRITERIA, constraints, weights
from trustrec.fairclf.dual import (
    DualBlock,
    minimise_split,
    shift,
    solve_block,
    unsplit,
)
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import (
    ClassifierConfig,
    LocalTask,
    Params,
    StaticTasks,
    fit_federated_classifier,
    one_hot,
    predict_proba,
)


def fit_joint(fed: FairFederation, cfg: ClassifierConfig, seed: int, *,
              on_round=None) -> Params:
    """FedAvg of the attribute-blind model of ``P(A, Y | x)`` on the training rows."""
    d = fed.data
    n_out = d.n_groups * d.n_classes
    tasks = [LocalTask(one_hot(d.group[r] * d.n_classes + d.y[r], n_out)) for r in fed.train]
    return fit_federated_classifier(StaticTasks(fed.x("train"), tasks), n_out, cfg, seed,
                                    on_round=on_round)


def fit_labels(fed: FairFederation, cfg: ClassifierConfig, seed: int, *,
               on_round=None) -> Params:
    """Plain FedAvg on the labels (the unconstrained baseline)."""
    d = fed.data
    tasks = [LocalTask(one_hot(d.y[r], d.n_classes)) for r in fed.train]
    return fit_federated_classifier(StaticTasks(fed.x("train"), tasks), d.n_classes, cfg,
                                    seed, on_round=on_round)


def joint_proba(params: Params, x, n_groups: int, n_classes: int) -> np.ndarray:
    """``(n, n_groups, n_classes)`` the joint model's ``P(A, Y | x)``."""
    return predict_proba(params, x).reshape(len(x), n_groups, n_classes)


@typed_config
class FedFACTConfig:
    """FedFACT post-processing's options.

    Attributes:
        criterion: ``dp``, ``eop`` or ``eodds``.
        xi: the global budget ξ_g (≥ 0).
        xi_local: the local budget ξ_l (≥ 0), or None for no local constraint.
        tau: the entropic temperature τ.
        steps: the server's L-BFGS-B iterations per temperature.
        local_steps: a client's L-BFGS-B iterations per round.
    """

    criterion: Annotated[str, one_of(CRITERIA, "fairness criterion")] = "dp"
    xi: NonNegativeFloat = 0.02
    xi_local: NonNegativeFloat | None = None
    tau: PositiveFloat = 0.01
    steps: PositiveInt = 300
    local_steps: PositiveInt = 200


class FedFACTPost(Configured):
    """FedFACT post-processing (see the module docstring)."""

    Config = FedFACTConfig

    def fit(self, joint_hold: list[np.ndarray]) -> FedFACTPost:
        """Fit the duals from each client's ``P(A, Y | x)`` on its held-out rows
        (``(n_k, n_groups, n_classes)`` each)."""
        c = self.config
        if not joint_hold or any(len(j) == 0 for j in joint_hold):
            raise ConfigError("every client needs held-out rows to fit FedFACT's duals")
        n_groups, n_classes = joint_hold[0].shape[1:]
        self.n_classes_ = n_classes
        self.constraints_ = cons = constraints(c.criterion, n_groups, n_classes)
        sizes = np.array([len(j) for j in joint_hold], dtype=np.float64)
        self.share_ = sizes / sizes.sum()
        self.local_prior_ = [j.mean(0) for j in joint_hold]
        self.prior_ = sum(p * m for p, m in zip(self.share_, self.local_prior_, strict=True))
        eta = [j.sum(1) for j in joint_hold]
        wg = [weights(cons, j, self.prior_) for j in joint_hold]
        wl = [weights(cons, j, m) for j, m in zip(joint_hold, self.local_prior_, strict=True)]
        n_c = len(cons)
        self.mu_split_ = [np.zeros(2 * n_c) for _ in joint_hold]
        self.rounds_ = 0

        def objective(z: np.ndarray, tau: float) -> tuple[float, np.ndarray]:
            self.rounds_ += 1
            lam = unsplit(z)
            value, d_global = c.xi * z.sum(), np.zeros(n_c)
            for k in range(len(joint_hold)):
                base = eta[k] - shift(wg[k], lam, cons.pred, n_classes)
                if c.xi_local is None:
                    lse = logsumexp(base / tau, axis=1)
                    h = np.exp(base / tau - lse[:, None])
                    v = self.share_[k] * tau * lse.mean()
                else:
                    self.mu_split_[k], v, h, _ = solve_block(
                        base, DualBlock(wl[k], cons.pred, c.xi_local, self.share_[k]), tau,
                        c.local_steps, self.mu_split_[k], schedule=False)
                value += v
                d_global += self.share_[k] * (h[:, cons.pred] * wg[k]).mean(0)
            return value, np.concatenate([c.xi - d_global, c.xi + d_global])

        z, self.dual_value_, self.dual_converged_ = minimise_split(objective, n_c, c.tau,
                                                                   c.steps)
        self.lambda_ = unsplit(z)
        if c.xi_local is not None:
            # One more round: every client's μ_k solved at the final λ (the last evaluation
            # may have been a line-search trial point).
            objective(z, c.tau)
        self.mu_ = [unsplit(m) for m in self.mu_split_]
        return self

    def beta(self, client: int, joint: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` client ``client``'s scores β of rows with model ``joint``."""
        cons, n = self.constraints_, self.n_classes_
        out = joint.sum(1) - shift(weights(cons, joint, self.prior_), self.lambda_, cons.pred, n)
        if self.config.xi_local is not None:
            out -= shift(weights(cons, joint, self.local_prior_[client]), self.mu_[client],
                         cons.pred, n)
        return out

    def predict(self, client: int, joint: np.ndarray) -> np.ndarray:
        """Client ``client``'s hard predictions ``argmax β``."""
        return self.beta(client, joint).argmax(1)

