"""The entropic dual of the fair classifier, shared by OptFair and FedFACT.

With constraint weights ``w_c(x)`` (:func:`~trustrec.fairclf.criteria.weights`) and
multipliers ``λ``, the classifier is ``h(x) = softmax(β(x)/τ)`` with
``β_j(x) = base_j(x) − Σ_{c: k_c = j} λ_c w_c(x)`` (``base = P(Y | x)`` less any other
block's shift), and ``λ`` minimises ``τ E[logsumexp(β/τ)] + ξ ‖λ‖₁``, whose gradient in
``λ_c`` is ``−d_c(h) = −E[h_{k_c} w_c]``. Writing ``λ = λ⁺ − λ⁻`` with both ≥ 0 makes the
ℓ1 term linear, so L-BFGS-B solves it with exact gradients; τ is lowered in steps (0.1,
0.03, then τ), each solve warm-started from the last, because the curvature grows as
1/τ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp


def shift(w: np.ndarray, lam: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n, n_classes)`` the term ``Σ_{c: k_c = j} λ_c w_c(x)`` subtracted from β."""
    return (w * lam) @ np.eye(n_classes)[pred]


@dataclass
class DualBlock:
    """One block of multipliers and the rows it is measured on.

    Attributes:
        w: ``(n, C)`` constraint weights of the rows.
        pred: ``(C,)`` the predicted class of each constraint.
        xi: the block's budget ξ.
        scale: the block's share of the objective (a client's population share).
    """

    w: np.ndarray
    pred: np.ndarray
    xi: float
    scale: float = 1.0


def dual_value(base: np.ndarray, block: DualBlock, z: np.ndarray, tau: float
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """The scaled dual ``scale·(τ E[lse(β/τ)] + ξ ‖λ‖₁)`` at the split multipliers ``z``,
    its gradient in ``z``, and ``h = softmax(β/τ)``."""
    n_c = len(block.pred)
    lam = z[:n_c] - z[n_c:]
    beta = base - shift(block.w, lam, block.pred, base.shape[1])
    lse = logsumexp(beta / tau, axis=1)
    h = np.exp(beta / tau - lse[:, None])
    d = (h[:, block.pred] * block.w).mean(0)
    value = tau * lse.mean() + block.xi * z.sum()
    return block.scale * value, block.scale * np.concatenate([block.xi - d, block.xi + d]), h


def temperatures(tau: float) -> list[float]:
    """The continuation schedule ending at ``tau``."""
    return sorted({max(tau, 0.1), max(tau, 0.03), tau}, reverse=True)


def minimise_split(objective, n_c: int, tau: float, steps: int, z0: np.ndarray | None = None
                   ) -> tuple[np.ndarray, float, bool]:
    """L-BFGS-B on ``z ≥ 0`` of ``objective(z, tau) → (value, grad)`` down the
    temperature schedule. Returns the split multipliers, the final value and whether the
    last solve converged."""
    z = np.zeros(2 * n_c) if z0 is None else z0.copy()
    res = None
    for t in temperatures(tau):
        res = minimize(objective, z, args=(t,), jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None)] * (2 * n_c),
                       options={"maxiter": steps, "gtol": 1e-10, "ftol": 1e-14})
        z = res.x
    assert res is not None
    return z, float(res.fun), bool(res.success)


def solve_block(base: np.ndarray, block: DualBlock, tau: float, steps: int,
                z0: np.ndarray | None = None, schedule: bool = True
                ) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """Minimise one block's dual with ``base`` fixed. Returns ``z``, the value, ``h`` and
    whether the last L-BFGS-B solve converged.
    ``schedule=False`` solves at ``tau`` only (a warm start that is already close)."""
    n_c = len(block.pred)

    def objective(z: np.ndarray, t: float) -> tuple[float, np.ndarray]:
        value, grad, _ = dual_value(base, block, z, t)
        return value, grad

    if schedule:
        z, value, ok = minimise_split(objective, n_c, tau, steps, z0)
    else:
        z = np.zeros(2 * n_c) if z0 is None else z0
        res = minimize(objective, z, args=(tau,), jac=True, method="L-BFGS-B",
                       bounds=[(0.0, None)] * (2 * n_c),
                       options={"maxiter": steps, "gtol": 1e-10, "ftol": 1e-14})
        z, value, ok = res.x, float(res.fun), bool(res.success)
    _, _, h = dual_value(base, block, z, tau)
    return z, value, h, ok


def unsplit(z: np.ndarray) -> np.ndarray:
    """``λ = λ⁺ − λ⁻``."""
    n_c = len(z) // 2
    return z[:n_c] - z[n_c:]
