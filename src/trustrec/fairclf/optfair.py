"""OptFair post-processing: the optimal fair multi-class classifier from an attribute-blind
model (Zhang, Li, Feng et al., "Demystifying the Optimal Fair Classifier in Multi-Class
Classification", arXiv 2606.00656).

1. Fit one attribute-blind model of ``P(A, Y | x)`` (multinomial logistic regression on
   the training rows, features standardised on them; a joint class per (group, label)).
2. Every criterion is a set of linear constraints ``d_c(h) = E[h_k(x) w_c(x)]``
   (:mod:`~trustrec.fairclf.criteria`). With an entropic regulariser τ the fair
   classifier is ``h(x) = softmax(β(x)/τ)`` with
   ``β_j(x) = η_j(x) − Σ_{c: k_c = j} λ_c w_c(x)`` and ``η = P(Y | x)``, and λ minimises
   the dual ``τ E[logsumexp(β/τ)] + ξ ‖λ‖₁``. Its gradient in ``λ_c`` is ``−d_c(h)``; at
   the optimum every ``|d_c| ≤ ξ``, tight where ``λ_c ≠ 0``. Solved by L-BFGS-B on
   ``λ = λ⁺ − λ⁻`` (:mod:`~trustrec.fairclf.dual`, shared with FedFACT).
3. λ is fitted on a **held-out** split (the released code fits it in-sample and never
   uses its validation split); the test split only measures.

Predictions are ``argmax β`` (deterministic; ``randomized=True`` samples ``h``). The
attribute is never needed at prediction time: ``P(A | x)`` comes from the model.
Departures: the paper's DP/EO/EOdds matrices ``D^{a,k}`` are written here directly as the
weights ``w_c`` (the same linear functionals); the released code's SGD with a proximal
step and an ℓ1-ball projection is replaced by L-BFGS-B on the split dual with τ lowered in
steps (the proximal SGD did not converge for equal opportunity at small ξ and τ).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

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
from trustrec.fairclf.dual import DualBlock, shift, solve_block, unsplit
from trustrec.seeding import rng


@typed_config
class OptFairConfig:
    """OptFair post-processing's options.

    Attributes:
        criterion: ``dp``, ``eop`` or ``eodds``.
        xi: the disparity budget ξ (≥ 0).
        tau: the entropic temperature τ.
        steps: L-BFGS-B iterations per temperature of the dual solve.
        l2: inverse regularisation ``C`` of the logistic model.
    """

    criterion: Annotated[str, one_of(CRITERIA, "fairness criterion")] = "dp"
    xi: NonNegativeFloat = 0.02
    tau: PositiveFloat = 0.01
    steps: PositiveInt = 500
    l2: PositiveFloat = 1.0


class OptFairPost(Configured):
    """OptFair post-processing (see the module docstring)."""

    Config = OptFairConfig

    def fit(self, x: np.ndarray, y: np.ndarray, group: np.ndarray, x_hold: np.ndarray,
            n_classes: int, n_groups: int) -> OptFairPost:
        """Fit ``P(A, Y | x)`` on ``(x, y, group)``, then λ on the held-out ``x_hold``.

        Raises:
            ConfigError: a class or group with no training row.
        """
        y, group = np.asarray(y), np.asarray(group)
        joint_label = group * n_classes + y
        counts = np.bincount(joint_label, minlength=n_groups * n_classes)
        if (counts.reshape(n_groups, n_classes).sum(0) == 0).any() or \
                (counts.reshape(n_groups, n_classes).sum(1) == 0).any():
            raise ConfigError("every class and every group needs a training row")
        self.n_classes_, self.n_groups_ = n_classes, n_groups
        self.scaler_ = StandardScaler().fit(x)
        self.model_ = LogisticRegression(C=self.config.l2, max_iter=2000).fit(
            self.scaler_.transform(x), joint_label)
        self.prior_ = (counts / counts.sum()).reshape(n_groups, n_classes)
        self.constraints_ = constraints(self.config.criterion, n_groups, n_classes)
        self.lambda_ = self._dual(x_hold)
        return self

    def joint(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_groups, n_classes)`` model estimate of ``P(A, Y | x)``."""
        proba = self.model_.predict_proba(self.scaler_.transform(x))
        out = np.zeros((len(x), self.n_groups_ * self.n_classes_))
        out[:, self.model_.classes_] = proba
        return out.reshape(len(x), self.n_groups_, self.n_classes_)

    def _beta(self, joint: np.ndarray, lam: np.ndarray) -> np.ndarray:
        w = weights(self.constraints_, joint, self.prior_)
        return joint.sum(1) - shift(w, lam, self.constraints_.pred, self.n_classes_)

    def _dual(self, x_hold: np.ndarray) -> np.ndarray:
        """Minimise the dual on the held-out rows (:mod:`~trustrec.fairclf.dual`)."""
        c = self.config
        joint = self.joint(x_hold)
        # The population P(A, Y) as the model sees it on these rows: then E[w_c] = 0
        # exactly, so the uniform classifier is feasible for every ξ ≥ 0 and the dual is
        # bounded (with the training frequencies it was not, for small ξ).
        self.prior_ = joint.mean(0)
        block = DualBlock(weights(self.constraints_, joint, self.prior_),
                          self.constraints_.pred, c.xi)
        z, self.dual_value_, _, self.dual_converged_ = solve_block(joint.sum(1), block, c.tau,
                                                                   c.steps)
        return unsplit(z)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``h(x) = softmax(β(x)/τ)``."""
        beta = self._beta(self.joint(x), self.lambda_)
        return softmax(beta / self.config.tau, axis=1)

    def predict(self, x: np.ndarray, randomized: bool = False, seed: int = 0) -> np.ndarray:
        """``argmax β(x)`` (or a draw from ``h(x)`` with ``randomized``)."""
        beta = self._beta(self.joint(x), self.lambda_)
        if not randomized:
            return beta.argmax(1)
        h = softmax(beta / self.config.tau, axis=1)
        u = rng(seed, "optfair", "draw").random(len(x))[:, None]
        return (h.cumsum(1) < u).sum(1).clip(max=self.n_classes_ - 1)

    def predict_unfair(self, x: np.ndarray) -> np.ndarray:
        """The attribute-blind model's own ``argmax P(Y | x)`` (ξ = ∞)."""
        return self.joint(x).sum(1).argmax(1)
