"""Influence-function machinery: parameter subsets, Hessian-vector products and solvers.

Influence-based unlearning needs ``(H + λI)⁻¹ g`` for the Hessian ``H`` of a training
objective restricted to a subset of parameters (selected rows of the user and item
tables). ``H`` is never formed: every solver only calls a Hessian-vector product (HVP),
computed by double backward (autograd through the gradient, the gradient graph built once
and reused for every product).

**Damping.** The solvers solve ``(H + λI) x = b`` with ``λ = damping ≥ 0``, in the units of
the objective (a sum over rows). It makes the system positive definite where ``H`` is only
semi-definite (flat directions, parameters whose terms were all removed) or slightly
indefinite (a non-convex objective away from its minimum), and bounds the step:
``‖x‖ ≤ ‖b‖ / λ`` along directions of zero curvature. Larger damping gives smaller, safer,
less accurate steps; ``λ → 0`` is the exact Newton step.

**Preconditioning.** Curvatures of user and item rows differ by orders of magnitude (a
popular item has thousands of terms, a rare one a handful), which slows both solvers
badly. :func:`node_preconditioner` estimates each table row's curvature scale from the
diagonal of ``H`` (Hutchinson's estimator: ``E[v ⊙ Hv]`` for Rademacher ``v``, averaged
over the row's entries) and the solvers take its inverse as a diagonal preconditioner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

HVP = Callable[[torch.Tensor], torch.Tensor]




class ParamSubset:
    """Selected rows of a model's user and item tables, viewed as one flat vector.

    Args:
        params: the full tables (name -> tensor; rows are users or items).
        user_tables: names of the tables indexed by user.
        item_tables: names of the tables indexed by item.
        users: selected user indices (sorted, unique).
        items: selected item indices (sorted, unique).

    Attributes:
        size: length of the flat vector.
        node_index: for every entry of the flat vector, the index of its node (the
            selected users are nodes ``0..len(users)-1``, then the selected items).
    """

    def __init__(self, params: Mapping[str, torch.Tensor], user_tables: Sequence[str],
                 item_tables: Sequence[str], users: np.ndarray, items: np.ndarray) -> None:
        self.base = {k: params[k].detach() for k in (*user_tables, *item_tables)}
        self.users = torch.as_tensor(np.asarray(users, dtype=np.int64))
        self.items = torch.as_tensor(np.asarray(items, dtype=np.int64))
        self._parts: list[tuple[str, torch.Tensor, tuple[int, ...], int]] = []
        node_parts: list[torch.Tensor] = []
        for names, idx, offset in ((user_tables, self.users, 0),
                                   (item_tables, self.items, len(self.users))):
            for name in names:
                shape = (len(idx), *self.base[name].shape[1:])
                width = int(np.prod(shape[1:], dtype=np.int64))
                self._parts.append((name, idx, shape, len(idx) * width))
                node_parts.append((torch.arange(len(idx)) + offset).repeat_interleave(width))
        self.size = sum(p[3] for p in self._parts)
        self.n_nodes = len(self.users) + len(self.items)
        self.node_index = (torch.cat(node_parts) if node_parts
                           else torch.zeros(0, dtype=torch.int64))

    def flat(self) -> torch.Tensor:
        """The current values of the selected rows, flattened (a new tensor)."""
        parts = [self.base[name].index_select(0, idx).reshape(-1)
                 for name, idx, _, _ in self._parts]
        return torch.cat(parts) if parts else torch.zeros(0)

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The flat vector as one ``(n_selected, ...)`` block per table."""
        out, start = {}, 0
        for name, _, shape, n in self._parts:
            out[name] = flat[start:start + n].reshape(shape)
            start += n
        return out

    def tables(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full tables with the selected rows replaced by ``flat`` (differentiable in it)."""
        blocks = self.split(flat)
        return {name: self.base[name].index_copy(0, idx, blocks[name])
                for name, idx, _, _ in self._parts}

    def updated(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detached full tables holding ``flat`` in the selected rows (new tensors)."""
        with torch.no_grad():
            return {k: v.detach().clone() for k, v in self.tables(flat.detach()).items()}

    def entries_of(self, names: Iterable[str]) -> torch.Tensor:
        """Boolean mask over the flat vector: the entries of the named tables."""
        names = set(names)
        return torch.cat([torch.full((n,), name in names, dtype=torch.bool)
                          for name, _, _, n in self._parts]) if self._parts else (
            torch.zeros(0, dtype=torch.bool))

    def node_mean(self, vec: torch.Tensor) -> torch.Tensor:
        """Mean of ``vec``'s entries per node (``n_nodes`` values)."""
        total = torch.zeros(self.n_nodes, dtype=vec.dtype).index_add_(0, self.node_index, vec)
        count = torch.bincount(self.node_index, minlength=self.n_nodes).clamp_min(1)
        return total / count


def gradient(loss_fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor
             ) -> torch.Tensor:
    """``∇ loss_fn(θ)`` at ``theta`` (a new, detached tensor)."""
    t = theta.detach().clone().requires_grad_()
    loss = loss_fn(t)
    if not loss.requires_grad:
        return torch.zeros_like(t.detach())
    (g,) = torch.autograd.grad(loss, t, allow_unused=True)
    return torch.zeros_like(t.detach()) if g is None else g.detach()


LossPart = tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor | None]


class HessianVectorProduct:
    """``v ↦ H v`` for the Hessian of a sum of loss parts, by double backward.

    ``H`` is never formed. Each part ``(loss_c, mask_c)`` contributes the Hessian of
    ``loss_c`` restricted to the entries of ``θ`` where ``mask_c`` is true (all entries for
    ``None``): its gradient is built once, with ``create_graph=True`` and the other entries
    detached, and a product backpropagates ``v`` through these gradient graphs
    (``∇(∇loss · v) = H v``). Two parts over the same terms with complementary masks (user
    rows, item rows) thus give the block-diagonal part of their Hessian at the cost of one
    backward pass per product. Splitting a sum of many rows into parts of a few tens of
    thousands of rows keeps intermediate tensors cache-sized, which on a CPU is several
    times faster than one large graph.

    Args:
        parts: ``(loss_fn, mask)`` pairs; ``loss_fn`` maps the flat parameters to a scalar.
        theta: the point at which the Hessian is taken.

    Attributes:
        calls: number of products computed so far.
        grad: the gradient of the parts at ``theta`` (each part's restricted to its mask),
            detached: a by-product of building the graphs.
    """

    def __init__(self, parts: Sequence[LossPart], theta: torch.Tensor) -> None:
        self.theta = theta.detach().clone().requires_grad_()
        self._grads = []
        grad = torch.zeros_like(self.theta, requires_grad=False)
        for fn, mask in parts:
            if mask is not None and not bool(mask.any()):
                continue
            t = self.theta if mask is None else torch.where(mask, self.theta,
                                                            self.theta.detach())
            loss = fn(t)
            if not loss.requires_grad:  # a part constant in θ (e.g. a zero L2 weight)
                continue
            (g,) = torch.autograd.grad(loss, self.theta, create_graph=True,
                                       allow_unused=True)
            if g is not None:
                grad += g.detach()
                if g.requires_grad:
                    self._grads.append(g)
        self.grad = grad
        self.calls = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` (a new, detached tensor of the parameters' shape)."""
        self.calls += 1
        if not self._grads:
            return torch.zeros_like(v)
        # a scalar output: passing v as grad_outputs would do the same, but makes torch
        # import its symbolic-shape machinery (sympy, ~0.4 s) on the first call
        dot = torch.stack([(g * v).sum() for g in self._grads]).sum()
        (hv,) = torch.autograd.grad(dot, self.theta, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()


@dataclass
class Solution:
    """Result of an inverse-Hessian-vector solve ``(H + λI) x = b``.

    Attributes:
        x: the solution estimate.
        iterations: solver iterations run.
        residual: relative residual ``‖b − (H + λI) x‖ / ‖b‖`` at the end.
        stopped: why it stopped: ``"tolerance"``, ``"iterations"``,
            ``"negative curvature"`` (CG met a direction with ``pᵀ(H + λI)p ≤ 0``) or
            ``"zero"`` (``b = 0``).
    """

    x: torch.Tensor
    iterations: int
    residual: float
    stopped: str


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x.double()))


def conjugate_gradient(hvp: HVP, b: torch.Tensor, iters: int = 20, tol: float = 1e-3,
                       damping: float = 0.0, precond: torch.Tensor | None = None,
                       x0: torch.Tensor | None = None) -> Solution:
    """Solve ``(H + damping·I) x = b`` by (preconditioned) conjugate gradients.

    Minimises ``½ xᵀ(H + λI)x − bᵀx`` over growing Krylov subspaces; exact after ``n``
    steps in exact arithmetic for a positive-definite system, and usually accurate after a
    few when the preconditioner captures the scale. If a search direction has non-positive
    curvature (``H`` indefinite and ``λ`` too small) the iterate so far is returned.

    Args:
        hvp: ``v ↦ H v``.
        b: right-hand side.
        iters: maximum number of iterations (one HVP each).
        tol: stop when ``‖r‖ ≤ tol · ‖b‖``.
        damping: ``λ ≥ 0`` added to the diagonal (see the module docstring).
        precond: positive diagonal ``M ≈ (H + λI)⁻¹`` (same shape as ``b``), or None.
        x0: starting point (default 0).

    Returns:
        A :class:`Solution`.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    b_norm = _norm(b)
    if b_norm == 0.0:
        return Solution(torch.zeros_like(b), 0, 0.0, "zero")
    def op(v: torch.Tensor) -> torch.Tensor:
        return hvp(v) + damping * v
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - op(x) if x0 is not None else b.clone()
    z = r * precond if precond is not None else r
    p = z.clone()
    rz = float(torch.dot(r.double(), z.double()))
    stopped, k = "iterations", 0
    for k in range(1, iters + 1):
        ap = op(p)
        pap = float(torch.dot(p.double(), ap.double()))
        if pap <= 0.0:
            stopped, k = "negative curvature", k - 1
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        if _norm(r) <= tol * b_norm:
            stopped = "tolerance"
            break
        z = r * precond if precond is not None else r
        rz_new = float(torch.dot(r.double(), z.double()))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return Solution(x, k, _norm(r) / b_norm, stopped)


def lissa(hvp: HVP, b: torch.Tensor, iters: int = 50, scale: float | None = None,
          damping: float = 0.0, precond: torch.Tensor | None = None, tol: float = 1e-3,
          power_iters: int = 10, seed: int = 0) -> Solution:
    """Solve ``(H + damping·I) x = b`` by LiSSA (Agarwal, Bullins & Hazan, 2017).

    LiSSA approximates the inverse by the Neumann series ``A⁻¹ = Σ_t (I − A/s)^t / s``,
    computed recursively: ``x_0 = 0``, ``x_t = x_{t−1} + M (b − A x_{t−1}) / s`` with
    ``A = H + λI`` (``M`` the optional diagonal preconditioner, identity by default). Here
    every product uses the whole objective (no stochastic mini-batches), so it is the
    deterministic Richardson form of LiSSA. It converges when ``s`` exceeds the largest
    eigenvalue of ``M A``; the error shrinks by ``1 − λ_min(MA)/s`` per step.

    Args:
        hvp: ``v ↦ H v``.
        b: right-hand side.
        iters: maximum number of recursion steps (one HVP each).
        scale: ``s``; None estimates ``λ_max(MA)`` by ``power_iters`` power iterations and
            uses 1.2 times it.
        damping: ``λ ≥ 0`` (see the module docstring).
        precond: positive diagonal ``M`` (same shape as ``b``), or None.
        tol: stop when the residual ``‖b − A x‖ ≤ tol · ‖b‖``.
        power_iters: power iterations of the scale estimate.
        seed: seed of the power iteration's start vector.

    Returns:
        A :class:`Solution` (``stopped`` is ``"tolerance"`` or ``"iterations"``).
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    if scale is not None and scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    b_norm = _norm(b)
    if b_norm == 0.0:
        return Solution(torch.zeros_like(b), 0, 0.0, "zero")
    m = precond if precond is not None else torch.ones_like(b)
    def op(v: torch.Tensor) -> torch.Tensor:
        return hvp(v) + damping * v
    if scale is None:
        scale = 1.2 * max(largest_eigenvalue(lambda v: m * op(v), b.shape[0], power_iters,
                                             seed, b.dtype), 1e-12)
    x = torch.zeros_like(b)
    r = b.clone()
    stopped, done = "iterations", 0
    while done < iters:
        done += 1
        x += (m * r) / scale
        r = b - op(x)
        if _norm(r) <= tol * b_norm:
            stopped = "tolerance"
            break
    return Solution(x, done, _norm(r) / b_norm, stopped)


def largest_eigenvalue(op: HVP, n: int, iters: int = 10, seed: int = 0,
                       dtype: torch.dtype = torch.float32) -> float:
    """Estimate the largest eigenvalue of a linear operator by power iteration.

    Args:
        op: ``v ↦ A v`` (``A`` with a real dominant eigenvalue, e.g. ``M(H + λI)``).
        n: dimension.
        iters: iterations.
        seed: seed of the start vector.
        dtype: dtype of the vectors.
    """
    if n == 0:
        return 0.0
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, generator=gen, dtype=dtype)
    v /= torch.linalg.vector_norm(v)
    lam = 0.0
    for _ in range(max(1, iters)):
        w = op(v)
        lam = float(torch.dot(v.double(), w.double()))
        nw = torch.linalg.vector_norm(w)
        if float(nw) == 0.0:
            return 0.0
        v = w / nw
    return abs(lam)


def node_preconditioner(hvp: HVP, subset: ParamSubset, damping: float, probes: int = 2,
                        seed: int = 0, floor: float = 1e-6) -> torch.Tensor:
    """Diagonal preconditioner ``1 / (c_node + λ)`` from per-node curvature estimates.

    ``c_node`` is the mean, over the node's entries, of Hutchinson's estimate of the
    diagonal of ``H`` (``mean over probes of v ⊙ Hv`` with Rademacher ``v``); averaging
    over a node's ``d`` entries makes a few probes enough. Estimates are taken in absolute
    value and floored (noise or an indefinite ``H`` can make them tiny or negative).

    Args:
        hvp: ``v ↦ H v``.
        subset: the parameter subset (gives each entry's node).
        damping: ``λ`` of the solve.
        probes: Rademacher probes (one HVP each).
        seed: seed of the probes.
        floor: smallest curvature used, relative to the largest node's.

    Returns:
        The preconditioner, shaped like the flat parameters.
    """
    gen = torch.Generator().manual_seed(int(seed))
    diag = torch.zeros(subset.size)
    for _ in range(max(1, probes)):
        v = torch.randint(0, 2, (subset.size,), generator=gen).float() * 2 - 1
        diag += v * hvp(v)
    node = subset.node_mean(diag / max(1, probes)).abs()
    top = float(node.max()) if len(node) else 0.0
    node = node.clamp_min(max(top * floor, 1e-12))
    return 1.0 / (node[subset.node_index] + damping)
