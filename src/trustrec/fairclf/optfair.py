"""OptFair post-processing: the optimal fair multi-class classifier from an attribute-blind
model (Zhang, Li, Feng et al., "Demystifying the Optimal Fair Classifier in Multi-Class
Classification", arXiv 2606.00656).

1. Fit one attribute-blind model of ``P(A, Y | x)`` (multinomial logistic regression on
   the training rows, features standardised on them; a joint class per (group, label)).
2. Every criterion is a set of linear constraints ``d_c(h) = E[h_k(x) w_c(x)]``
   (:mod:`~trustrec.fairclf.criteria`). With an entropic regulariser τ the fair
   classifier is ``h(x) = softmax(β(x)/τ)`` with
   ``β_j(x) = η_j(x) − Σ_{c: k_c = j} λ_c w_c(x)`` and ``η = P(Y | x)``, and λ minimises
   the dual ``τ E[logsumexp(β/τ)] + ξ ‖λ‖₁``. Its gradient in ``λ_c`` is ``−d_c(h)``, so
   the dual is solved by proximal gradient: ``λ ← soft(λ + η d(h), η ξ)`` (full batch).
   At the optimum every ``|d_c| ≤ ξ``, tight where ``λ_c ≠ 0``.
3. λ is fitted on a **held-out** split (the released code fits it in-sample and never
   uses its validation split); the test split only measures.

Predictions are ``argmax β`` (deterministic; ``randomized=True`` samples ``h``). The
attribute is never needed at prediction time: ``P(A | x)`` comes from the model.
Departures: the paper's DP/EO/EOdds matrices ``D^{a,k}`` are written here directly as the
weights ``w_c`` (the same linear functionals); the ℓ1-ball projection of the released code
is replaced by the plain ℓ1 proximal step (the ball only bounds λ); each constraint's
step is ``lr / rms(w_c)`` (a diagonal preconditioner: equal-opportunity weights reach
``1/P(A=a, Y=y)`` and oscillated with one step size), and the last iterate is kept.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from scipy.special import logsumexp, softmax
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
from trustrec.seeding import rng


@typed_config
class OptFairConfig:
    """OptFair post-processing's options.

    Attributes:
        criterion: ``dp``, ``eop`` or ``eodds``.
        xi: the disparity budget ξ (≥ 0).
        tau: the entropic temperature τ.
        lr: the dual step size.
        steps: dual steps.
        l2: inverse regularisation ``C`` of the logistic model.
    """

    criterion: Annotated[str, one_of(CRITERIA, "fairness criterion")] = "dp"
    xi: NonNegativeFloat = 0.02
    tau: PositiveFloat = 0.01
    lr: PositiveFloat = 1.0
    steps: PositiveInt = 3000
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

    def _beta(self, joint: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = weights(self.constraints_, joint, self.prior_)
        shift = np.zeros((len(joint), self.n_classes_))
        np.add.at(shift.T, self.constraints_.pred, (w * lam).T)
        return joint.sum(1) - shift, w

    def _dual(self, x_hold: np.ndarray) -> np.ndarray:
        c = self.config
        joint = self.joint(x_hold)
        lam = np.zeros(len(self.constraints_))
        # A diagonal preconditioner: constraint c's step is lr / rms(w_c), so constraints
        # on rare (group, label) cells, whose weights reach 1/P(A=a, Y=y), do not oscillate.
        step = c.lr / np.sqrt((weights(self.constraints_, joint, self.prior_) ** 2)
                              .mean(0) + 1e-12)
        for _ in range(c.steps):
            beta, w = self._beta(joint, lam)
            h = softmax(beta / c.tau, axis=1)
            d = (h[:, self.constraints_.pred] * w).mean(0)
            lam = lam + step * d
            lam = np.sign(lam) * np.maximum(np.abs(lam) - step * c.xi, 0.0)
        beta, _ = self._beta(joint, lam)
        self.dual_value_ = float(c.tau * logsumexp(beta / c.tau, axis=1).mean()
                                 + c.xi * np.abs(lam).sum())
        return lam

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``h(x) = softmax(β(x)/τ)``."""
        beta, _ = self._beta(self.joint(x), self.lambda_)
        return softmax(beta / self.config.tau, axis=1)

    def predict(self, x: np.ndarray, randomized: bool = False, seed: int = 0) -> np.ndarray:
        """``argmax β(x)`` (or a draw from ``h(x)`` with ``randomized``)."""
        beta, _ = self._beta(self.joint(x), self.lambda_)
        if not randomized:
            return beta.argmax(1)
        h = softmax(beta / self.config.tau, axis=1)
        u = rng(seed, "optfair", "draw").random(len(x))[:, None]
        return (h.cumsum(1) < u).sum(1).clip(max=self.n_classes_ - 1)

    def predict_unfair(self, x: np.ndarray) -> np.ndarray:
        """The attribute-blind model's own ``argmax P(Y | x)`` (ξ = ∞)."""
        return self.joint(x).sum(1).argmax(1)
