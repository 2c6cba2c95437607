"""Differentiable losses and projections of the post-training attribute-unlearning methods.

Pure tensor functions (no model, no data set) used by :mod:`trustrec.privacy.potau` and
:mod:`trustrec.privacy.lego`, each testable on a tiny table:

* :func:`mmd2` — biased multi-kernel RBF MMD² between two groups (PoT-AU D2D), and
  :func:`mmd2_to_anchor`, a weighted sum of it for several groups against one anchor
  with a shared kernel.
* :func:`pooled_bandwidth` — the kernels' base bandwidth, the mean squared distance over
  all pairs of pooled samples, in ``O(n d)``.
* :func:`cross_class_sq_dist` — mean squared distance over every pair of users from
  different classes (PoT-AU U2U), in ``O(n d)`` from class sums, never an ``n × n``
  matrix; optionally on the users' outer products ``e eᵀ`` (second moments, ``O(n d²)``).
* :func:`between_class_ratio` — the between-class share of the total scatter: the same
  all-pairs comparison without its spread terms, scale-free, for any number of classes
  at the cost of one.
* :func:`ranking_hinge` — the function-space regulariser that keeps each user's original
  top-k order.
* :func:`vclub` — the vCLUB mutual-information upper bound of a variational classifier's
  log-probabilities (LEGO), in ``O(n C)`` with class frequencies.
* :func:`project_ball` — projection of each user's row onto a ball around its original row.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def mmd2_to_anchor(groups: Sequence[torch.Tensor], anchor: torch.Tensor,
                   weights: Sequence[float], *, n_kernels: int = 5, mul: float = 2.0
                   ) -> torch.Tensor:
    """``Σ_c w_c MMD²(groups[c], anchor)`` with one kernel shared by every comparison.

    Each term is :func:`mmd2` with the bandwidth :func:`pooled_bandwidth` of *all* the
    rows (the groups and the anchor), so the anchor's own kernel mean is computed once
    and the cross kernels of every group come from one ``(Σ n_c) × m`` matrix: the cost
    of one comparison of all the users against the anchor, not ``C − 1`` of them. With
    one group it equals :func:`mmd2`.

    Args:
        groups: ``(n_c, d)`` rows of each non-anchor group (none empty).
        anchor: ``(m, d)`` rows of the anchor group.
        weights: ``w_c`` per group.
        n_kernels: number of RBF kernels.
        mul: ratio between consecutive bandwidths.
    """
    if len(anchor) == 0 or not groups or any(len(g) == 0 for g in groups):
        raise ValueError("mmd2_to_anchor needs a non-empty anchor and non-empty groups")
    rows = torch.cat(list(groups))
    sigmas = kernel_bandwidths(pooled_bandwidth(rows, anchor), n_kernels, mul)
    sizes = [len(g) for g in groups]
    w = torch.as_tensor(list(weights), dtype=anchor.dtype)
    cross = rbf_sum(sq_dist(rows, anchor), sigmas).mean(1)            # (Σ n_c,)
    cross_means = torch.stack([c.mean() for c in torch.split(cross, sizes)])
    self_means = torch.stack([_kernel_mean(g, g, sigmas) for g in groups])
    return w.sum() * _kernel_mean(anchor, anchor, sigmas) + (w * (self_means
                                                                 - 2.0 * cross_means)).sum()


def _class_moments(groups: Sequence[torch.Tensor], outer: bool
                   ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Per class: size, feature sum and sum of squared feature norms.

    The feature of a row ``e`` is ``e`` itself, or with ``outer`` its outer product
    ``e eᵀ`` (then the sum is the Gram ``XᵀX`` and ``‖e eᵀ‖²_F = ‖e‖⁴``): never an
    ``(n, d²)`` array.
    """
    if len(groups) < 2 or any(len(g) == 0 for g in groups):
        raise ValueError("needs at least two non-empty groups")
    sizes = torch.tensor([float(len(g)) for g in groups], dtype=groups[0].dtype)
    if outer:
        sums = [g.T @ g for g in groups]
        squares = [(g * g).sum(1).square().sum() for g in groups]
    else:
        sums = [g.sum(0) for g in groups]
        squares = [(g * g).sum() for g in groups]
    return sizes, sums, squares


def cross_class_sq_dist(groups: Sequence[torch.Tensor], outer: bool = False
                        ) -> torch.Tensor:
    """Mean of ``‖f(x_i) − f(x_j)‖²`` over every pair of rows from different groups.

    ``f`` is the identity, or with ``outer`` the outer product ``e eᵀ`` (Frobenius norm).
    From group sums in ``O(n d)`` (``O(n d²)`` with ``outer``): the sum over all pairs
    of a set is ``n Σ‖f‖² − ‖Σ f‖²``, and the cross-group sum is that of the union minus
    that of each group. With two groups it is ``tr Σ_x + tr Σ_y + ‖μ_x − μ_y‖²``
    (population covariances); it is PoT-AU's U2U loss ``Σ_{i, j cross} ‖e_i − e_j‖²``
    divided by the number of cross pairs.

    Args:
        groups: ``(n_c, d)`` rows of each group (at least two, none empty).
        outer: compare the rows' outer products instead of the rows.
    """
    sizes, sums, squares = _class_moments(groups, outer)

    def pairs(n: torch.Tensor, s: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return n * q - (s * s).sum()

    total = pairs(sizes.sum(), sum(sums), sum(squares))
    within = sum(pairs(n, s, q) for n, s, q in zip(sizes, sums, squares, strict=True))
    n_cross = 0.5 * (sizes.sum() ** 2 - (sizes ** 2).sum())
    return (total - within) / n_cross


def between_class_ratio(groups: Sequence[torch.Tensor], outer: bool = False
                        ) -> torch.Tensor:
    """Between-group over total scatter of the rows (or their outer products), in [0, 1].

    ``Σ_c n_c ‖μ_c − μ‖² / Σ_i ‖f(x_i) − μ‖²`` (``μ_c``, ``μ``: group and overall means of
    the features ``f``, see :func:`cross_class_sq_dist`). By the identity
    ``Σ_{c < c'} n_c n_c' ‖μ_c − μ_c'‖² = N Σ_c n_c ‖μ_c − μ‖²`` the numerator is the
    all-pairs U2U loss with its spread terms removed, so the cost does not grow with
    the number of class pairs. Scale-free: multiplying every row by the same factor does
    not change it, so it cannot be lowered by shrinking the table, only by closing the
    gaps between the groups relative to the spread.

    Args:
        groups: ``(n_c, d)`` rows of each group (at least two, none empty).
        outer: compare the rows' outer products instead of the rows.
    """
    sizes, sums, squares = _class_moments(groups, outer)
    total_sum, n = sum(sums), sizes.sum()
    centre = (total_sum * total_sum).sum() / n
    between = sum((s * s).sum() / k for s, k in zip(sums, sizes, strict=True)) - centre
    return between / (sum(squares) - centre).clamp_min(1e-12)


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
