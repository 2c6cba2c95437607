"""Differentiable losses and projections of the post-training attribute-unlearning methods.

Pure tensor functions (no model, no data set) used by :mod:`trustrec.privacy.potau` and
:mod:`trustrec.privacy.lego`, each testable on a tiny table:

* :func:`mmd2` — biased multi-kernel RBF MMD² between two groups (PoT-AU D2D).
* :func:`pooled_bandwidth` — the kernels' base bandwidth, the mean squared distance over
  all pairs of pooled samples, in ``O(n d)``.
* :func:`cross_group_sq_dist` — mean squared distance over every cross-group pair, in
  ``O(n d)`` from group sums (PoT-AU U2U), never an ``n × n`` matrix.
* :func:`cross_group_sq_dist_outer` — the same on the users' outer products ``e eᵀ``
  (second moments), in ``O(n d²)``.
* :func:`cross_within_ratio` — either, divided by the within-group mean: a scale-free
  version that shrinking the table cannot lower.
* :func:`ranking_hinge` — the function-space regulariser that keeps each user's original
  top-k order.
* :func:`vclub` — the vCLUB mutual-information upper bound of a variational classifier's
  log-probabilities (LEGO), in ``O(n C)`` with class frequencies.
* :func:`project_ball` — projection of each user's row onto a ball around its original row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def pooled_bandwidth(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared distance over all ordered pairs of distinct pooled samples (detached).

    ``b = Σ_{i≠j} ‖z_i − z_j‖² / (N² − N)`` over ``z = [x; y]``, computed in ``O(N d)`` as
    ``(2 N Σ‖z‖² − 2 ‖Σ z‖²) / (N² − N)``.

    Args:
        x: ``(n, d)`` first group.
        y: ``(m, d)`` second group.

    Returns:
        A 0-dim tensor (no gradient flows through the bandwidth).
    """
    z = torch.cat([x, y]).detach().double()
    n = z.shape[0]
    total = 2.0 * n * (z * z).sum() - 2.0 * (z.sum(0) ** 2).sum()
    return (total / max(n * n - n, 1)).clamp_min(1e-12).to(x.dtype)


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(n, m)`` squared Euclidean distances between the rows of ``a`` and ``b``."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


class _RBFSum(torch.autograd.Function):
    """``Σ_s exp(−sq / σ_s)`` with bandwidths that double (widest first), and its gradient
    ``−Σ_s exp(−sq / σ_s) / σ_s`` computed in the same pass (one saved matrix)."""

    @staticmethod
    def forward(ctx: Any, sq: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        e = torch.exp(sq / -sigmas[0])
        total, slope = e.clone(), e / sigmas[0]
        for s in sigmas[1:]:
            e = e.square_() if not e.requires_grad else e * e
            total.add_(e)
            slope.add_(e, alpha=float(1.0 / s))
        ctx.save_for_backward(slope)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (slope,) = ctx.saved_tensors
        return -grad * slope, None


def rbf_sum(sq: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``Σ_s exp(−sq / σ_s)`` elementwise (differentiable in ``sq``, not in ``sigmas``).

    When consecutive bandwidths double (:func:`kernel_bandwidths` with ``mul = 2``), one
    ``exp`` at the widest bandwidth is computed and each narrower kernel is the square of
    the previous one (``exp(−x/σ)² = exp(−x/(σ/2))``), and the gradient is accumulated in
    the same pass: several times faster on CPU than one ``exp`` per kernel under autograd.
    Otherwise one ``exp`` per kernel.
    """
    ordered = torch.sort(sigmas.detach(), descending=True).values
    doubling = len(ordered) > 1 and bool(torch.allclose(ordered[:-1] / ordered[1:],
                                                        torch.full_like(ordered[1:], 2.0)))
    if not doubling:
        return sum(torch.exp(sq / -s) for s in ordered)
    return _RBFSum.apply(sq, ordered.to(sq.dtype))


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    return rbf_sum(sq_dist(a, b), sigmas).mean()


def kernel_bandwidths(base: torch.Tensor, n_kernels: int = 5, mul: float = 2.0
                      ) -> torch.Tensor:
    """``base · mul^(i − n_kernels // 2)`` for ``i = 0 .. n_kernels − 1`` (``{b/4 .. 4b}``)."""
    powers = torch.arange(n_kernels, dtype=base.dtype) - n_kernels // 2
    return base * mul ** powers


def mmd2(x: torch.Tensor, y: torch.Tensor, *, n_kernels: int = 5, mul: float = 2.0,
         bandwidth: torch.Tensor | None = None) -> torch.Tensor:
    """Biased (V-statistic) MMD² with a sum of RBF kernels ``Σ_s exp(−‖a − b‖² / σ_s)``.

    ``MMD² = mean K(x, x) + mean K(y, y) − 2 mean K(x, y)`` (diagonals included), with
    bandwidths :func:`kernel_bandwidths` of :func:`pooled_bandwidth` unless given. It is
    0 for identical groups and > 0 when the distributions differ.

    Args:
        x: ``(n, d)`` first group (may require grad).
        y: ``(m, d)`` second group.
        n_kernels: number of RBF kernels.
        mul: ratio between consecutive bandwidths.
        bandwidth: base bandwidth ``b``; default :func:`pooled_bandwidth`.

    Returns:
        A 0-dim tensor. Memory is ``O((n + m)²)``: callers subsample large groups (see
        :class:`trustrec.privacy.potau.PoTAUD2D`).
    """
    if len(x) == 0 or len(y) == 0:
        raise ValueError("mmd2 needs two non-empty groups")
    base = pooled_bandwidth(x, y) if bandwidth is None else bandwidth
    sigmas = kernel_bandwidths(base, n_kernels, mul)
    return (_kernel_mean(x, x, sigmas) + _kernel_mean(y, y, sigmas)
            - 2.0 * _kernel_mean(x, y, sigmas))


def cross_group_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``‖x_i − y_j‖²`` over every pair ``(i, j)``, in ``O((n + m) d)``.

    ``Σ_{i, j} ‖x_i − y_j‖² = m Σ_i ‖x_i‖² + n Σ_j ‖y_j‖² − 2 (Σ_i x_i) · (Σ_j y_j)``,
    divided by ``n m``; equal to ``tr Σ_x + tr Σ_y + ‖μ_x − μ_y‖²`` (biased covariances).

    Args:
        x: ``(n, d)`` first group.
        y: ``(m, d)`` second group.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("cross_group_sq_dist needs two non-empty groups")
    total = (m * (x * x).sum() + n * (y * y).sum() - 2.0 * (x.sum(0) * y.sum(0)).sum())
    return total / (n * m)


def cross_group_sq_dist_outer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``‖x_i x_iᵀ − y_j y_jᵀ‖²_F`` over every pair ``(i, j)``, in ``O((n + m) d²)``.

    :func:`cross_group_sq_dist` on the outer products, from group sums:
    ``‖x xᵀ‖²_F = ‖x‖⁴`` and ``Σ_{i, j} ⟨x_i x_iᵀ, y_j y_jᵀ⟩ = ⟨XᵀX, YᵀY⟩_F``; no
    ``(n, d²)`` or ``n × m`` array is formed.

    Args:
        x: ``(n, d)`` first group.
        y: ``(m, d)`` second group.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("cross_group_sq_dist_outer needs two non-empty groups")
    fourth = (x * x).sum(1).square().sum(), (y * y).sum(1).square().sum()
    total = m * fourth[0] + n * fourth[1] - 2.0 * ((x.T @ x) * (y.T @ y)).sum()
    return total / (n * m)


def cross_within_ratio(x: torch.Tensor, y: torch.Tensor,
                       dist: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                       = cross_group_sq_dist) -> torch.Tensor:
    """Cross-group over within-group mean squared pair distance, minus one.

    ``dist(x, y) / ((dist(x, x) + dist(y, y)) / 2) − 1``. For the plain distance it is
    ``‖μ_x − μ_y‖² / (tr Σ_x + tr Σ_y)`` (``mean_{i, i'} ‖x_i − x_i'‖² = 2 tr Σ_x``): unlike
    the cross-group mean it does not change when every row is scaled by the same factor,
    so it cannot be lowered by shrinking the table, only by closing the gap between the
    groups relative to their spread.

    Args:
        x: ``(n, d)`` first group.
        y: ``(m, d)`` second group.
        dist: :func:`cross_group_sq_dist` or :func:`cross_group_sq_dist_outer`.
    """
    within = 0.5 * (dist(x, x) + dist(y, y))
    return dist(x, y) / within.clamp_min(1e-12) - 1.0


def ranking_hinge(scores: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over users of ``Σ_k max(0, s_{k+1} − s_k + margin)``.

    Args:
        scores: ``(n_users, k)`` scores of each user's original top-k items, best first.
        margin: required score gap between consecutive items.
    """
    if scores.shape[1] < 2:
        return scores.new_zeros(())
    return torch.relu(scores[:, 1:] - scores[:, :-1] + margin).sum(1).mean()


def vclub(log_probs: torch.Tensor, labels: torch.Tensor, class_freq: torch.Tensor
          ) -> torch.Tensor:
    """vCLUB estimate ``mean_i [log q(a_i|u_i) − mean_j log q(a_j|u_i)]`` in ``O(n C)``.

    The inner mean over all users ``j`` only depends on ``a_j``, so it equals
    ``Σ_c p_c log q(c|u_i)`` with ``p_c`` the share of users in class ``c``.

    Args:
        log_probs: ``(n, C)`` log-probabilities of the variational classifier.
        labels: ``(n,)`` int64 classes in ``[0, C)``.
        class_freq: ``(C,)`` class shares (summing to 1).
    """
    positive = log_probs.gather(1, labels[:, None]).squeeze(1)
    negative = log_probs @ class_freq.to(log_probs.dtype)
    return (positive - negative).mean()


def project_ball(table: torch.Tensor, origin: torch.Tensor, radius: torch.Tensor | float
                 ) -> torch.Tensor:
    """Each row of ``table`` moved back into the ball of ``radius`` around its ``origin`` row.

    ``u ← u₀ + r (u − u₀) / ‖u − u₀‖`` where ``‖u − u₀‖ > r``; other rows are unchanged.

    Args:
        table: ``(n, d)`` rows.
        origin: ``(n, d)`` centres.
        radius: a scalar or ``(n,)`` radii (>= 0).
    """
    delta = table - origin
    norm = delta.norm(dim=1)
    r = torch.as_tensor(radius, dtype=table.dtype).expand_as(norm)
    scale = torch.where(norm > r, r / norm.clamp_min(1e-30), torch.ones_like(norm))
    return origin + delta * scale[:, None]
