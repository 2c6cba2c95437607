"""Variational classifiers ``q_φ(a | u)`` for LEGO's vCLUB bound (:mod:`trustrec.privacy.lego`).

Each has ``fit(rows, y)`` — the max step of Eq. 6 on fixed rows — and ``log_probs(rows)``,
differentiable in ``rows`` for the min step.

* ``gaussian`` (:class:`GaussianQ`): class-conditional Gaussians with shrunk covariances
  and the class shares as prior, ``q(a | u) ∝ p_a N(u; μ_a, Σ_a)``; ``fit`` is the
  closed-form maximum-likelihood estimate of the class-conditional model.
* ``kernel`` (:class:`KernelQ`): Parzen-window class densities with leave-one-out,
  ``q(a | u_i) ∝ p_a · mean_{j ∈ a, j ≠ i} K(u_i, u_j)``; ``fit`` stores (a sample of)
  the rows as references. Nonparametric, so it sees any difference between the class
  distributions, and leave-one-out keeps it from memorising individual users.
* ``linear`` and ``mlp`` (:class:`NeuralQ`): softmax regression, or one hidden ReLU layer,
  on standardised inputs, fitted by Adam steps on the conditional log-likelihood.
"""

from __future__ import annotations

from typing import Protocol

import torch

from trustrec.errors import ConfigError
from trustrec.privacy.losses import kernel_bandwidths, pooled_bandwidth, rbf_sum, sq_dist

#: Names of the variational families.
FAMILIES: tuple[str, ...] = ("kernel", "gaussian", "linear", "mlp")


class Variational(Protocol):
    """What LEGO needs of a variational classifier."""

    def fit(self, rows: torch.Tensor, y: torch.Tensor) -> float | None: ...

    def log_probs(self, rows: torch.Tensor) -> torch.Tensor: ...


def _cholesky(cov: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of ``cov + δ I``, ``δ`` from ``1e-6 · scale`` up until it succeeds."""
    eye = torch.eye(len(cov), dtype=cov.dtype)
    jitter = 1e-6 * float(scale)
    for _ in range(12):
        chol, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            return chol
        jitter *= 10.0
    raise ValueError("class covariance is not positive definite even with jitter")


def nll(q: Variational, rows: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative conditional log-likelihood ``−mean_i log q(y_i | rows_i)``."""
    return -q.log_probs(rows).gather(1, y[:, None]).mean()


class GaussianQ:
    """``q(a | u) ∝ p_a N(u; μ_a, Σ_a)`` with ``Σ_a = (1 − s) S_a + s diag(S_a) + δ I``.

    ``μ_a`` and ``S_a`` are the mean and (population) covariance of class ``a``; shrinking
    towards the diagonal keeps ``Σ_a`` invertible for classes with fewer users than
    dimensions; ``δ`` is ``1e-6`` of the mean variance (more if needed to be positive
    definite). The parameters are constants of the min step (no gradient flows into them).

    Args:
        n_classes: number of classes ``C``.
        shrinkage: ``s`` in ``[0, 1]``.
    """

    def __init__(self, n_classes: int, shrinkage: float) -> None:
        self.n_classes, self.shrinkage = n_classes, shrinkage
        self.means: torch.Tensor | None = None
        self.chols: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def fit(self, rows: torch.Tensor, y: torch.Tensor) -> float:
        """Estimate means, covariances and priors from ``rows`` (detached); returns the NLL."""
        x = rows.detach().double()
        means, chols, bias = [], [], []
        prior = torch.bincount(y, minlength=self.n_classes).double() / len(y)
        d = x.shape[1]
        for c in range(self.n_classes):
            xc = x[y == c]
            mu = xc.mean(0)
            cov = (torch.cov(xc.T, correction=0) if len(xc) > 1
                   else torch.diag(x.var(0, correction=0))).reshape(d, d)
            diag = torch.diag(cov).clamp_min(1e-6 * x.var(0).mean().clamp_min(1e-12))
            cov = (1 - self.shrinkage) * cov + self.shrinkage * torch.diag(diag)
            chol = _cholesky(cov, diag.mean())
            means.append(mu)
            chols.append(chol)
            bias.append(torch.log(prior[c]) - torch.log(torch.diag(chol)).sum())
        self.means, self.chols, self.bias = torch.stack(means), torch.stack(chols), \
            torch.stack(bias)
        with torch.no_grad():
            return float(nll(self, rows, y))

    def log_probs(self, rows: torch.Tensor) -> torch.Tensor:
        """``(n, C)`` log-posteriors (float64 internally, returned in ``rows``' dtype)."""
        if self.means is None:
            raise RuntimeError("GaussianQ is not fitted")
        diff = rows.double()[None, :, :] - self.means[:, None, :]          # (C, n, d)
        white = torch.linalg.solve_triangular(self.chols, diff.transpose(1, 2),
                                              upper=False)               # (C, d, n)
        logits = self.bias[:, None] - 0.5 * white.square().sum(1)         # (C, n)
        return torch.log_softmax(logits.T, dim=1).to(rows.dtype)


class KernelQ:
    """Parzen-window ``q(a | u_i) ∝ p_a · mean_{j ∈ a, j ≠ i} K(u_i, r_j)`` (leave-one-out).

    ``K`` is a sum of RBF kernels with bandwidths ``scale · b · 2^k`` around the middle
    one (:func:`~trustrec.privacy.losses.kernel_bandwidths`), ``b`` the mean squared
    distance between reference rows. :meth:`fit` keeps at most ``sample`` reference rows
    per class (a seeded fresh draw each call); :meth:`log_probs` must get the *same users
    in the same order* as :meth:`fit` (row ``i`` is left out of its own density). Cost
    ``O(n · C · sample)`` per call.

    Args:
        n_classes: number of classes ``C``.
        scale: bandwidth scale.
        n_kernels: number of RBF kernels.
        sample: references per class (0: all).
        seed: seed of the reference draws.
    """

    def __init__(self, n_classes: int, scale: float, n_kernels: int, sample: int,
                 seed: int) -> None:
        self.n_classes, self.scale, self.n_kernels, self.sample = (n_classes, scale,
                                                                   n_kernels, sample)
        self.gen = torch.Generator().manual_seed(seed)
        self.ref: torch.Tensor | None = None

    def fit(self, rows: torch.Tensor, y: torch.Tensor) -> float | None:
        """Keep (a sample of) ``rows`` as references; returns None (no likelihood is
        computed, to save an ``n × references`` pass)."""
        picks = []
        for c in range(self.n_classes):
            idx = torch.nonzero(y == c).squeeze(1)
            if self.sample and len(idx) > self.sample:
                idx = idx[torch.randperm(len(idx), generator=self.gen)[:self.sample]]
            picks.append(idx)
        self.ref = torch.cat(picks)
        self.ref_rows = rows.detach()[self.ref]
        self.ref_onehot = torch.nn.functional.one_hot(y[self.ref], self.n_classes).to(
            rows.dtype)
        base = pooled_bandwidth(self.ref_rows, self.ref_rows[:0])
        self.sigmas = kernel_bandwidths(self.scale * base, self.n_kernels)
        self.prior = torch.log(torch.bincount(y, minlength=self.n_classes).double()
                               / len(y)).to(rows.dtype)
        return None

    def log_probs(self, rows: torch.Tensor) -> torch.Tensor:
        """``(n, C)`` leave-one-out log-posteriors of the fitted users' rows."""
        if self.ref is None:
            raise RuntimeError("KernelQ is not fitted")
        k = rbf_sum(sq_dist(rows, self.ref_rows), self.sigmas)
        own = self.ref[None, :] == torch.arange(len(rows))[:, None]
        k = k.masked_fill(own, 0.0)
        counts = self.ref_onehot.sum(0)[None, :] - own.to(rows.dtype) @ self.ref_onehot
        dens = (k @ self.ref_onehot) / counts.clamp_min(1.0)
        tiny = torch.finfo(rows.dtype).tiny
        return torch.log_softmax(torch.log(dens.clamp_min(tiny)) + self.prior, dim=1)


class NeuralQ:
    """Softmax regression (``hidden = 0``) or a one-hidden-layer ReLU MLP, on inputs
    standardised with a fixed mean and spread, fitted by AdamW steps.

    Parameters are drawn from a seeded generator (no global RNG), uniform in
    ``±1/√fan_in`` like PyTorch's ``Linear``; the optimiser state persists across
    :meth:`fit` calls (warm start, as in alternating optimisation).
    """

    def __init__(self, d: int, n_classes: int, hidden: int, mean: torch.Tensor,
                 std: torch.Tensor, seed: int, *, lr: float, steps: int,
                 decay: float) -> None:
        gen = torch.Generator().manual_seed(seed)
        sizes = [d, hidden, n_classes] if hidden else [d, n_classes]
        self.params: list[torch.Tensor] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / fan_in ** 0.5
            for shape in ((fan_in, fan_out), (fan_out,)):
                w = (torch.rand(shape, generator=gen) * 2 - 1) * bound
                self.params.append(w.requires_grad_(True))
        self.mean, self.std, self.steps = mean, std, steps
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=decay, foreach=True)

    def fit(self, rows: torch.Tensor, y: torch.Tensor) -> float:
        """``steps`` AdamW steps on the NLL of fixed ``rows``; returns the last NLL."""
        fixed = rows.detach()
        value = 0.0
        for _ in range(self.steps):
            self.opt.zero_grad(set_to_none=True)
            loss = nll(self, fixed, y)
            loss.backward()
            self.opt.step()
            value = loss.item()
        return value

    def log_probs(self, rows: torch.Tensor) -> torch.Tensor:
        """``(n, C)`` log-probabilities."""
        h = (rows - self.mean) / self.std
        for k in range(0, len(self.params), 2):
            h = h @ self.params[k] + self.params[k + 1]
            if k + 2 < len(self.params):
                h = torch.relu(h)
        return torch.log_softmax(h, dim=1)


def make_variational(family: str, origin: torch.Tensor, n_classes: int, seed: int, *,
                     shrinkage: float = 0.5, hidden: int = 64, lr: float = 1e-2,
                     steps: int = 10, decay: float = 0.0, kernel_scale: float = 0.25,
                     n_kernels: int = 5, sample: int = 1024) -> Variational:
    """A fresh variational classifier of ``family`` for rows like ``origin``.

    Args:
        family: one of :data:`FAMILIES`.
        origin: the original table (its mean and spread standardise neural inputs).
        n_classes: number of classes.
        seed: seed of the neural parameters.
        shrinkage: covariance shrinkage of ``gaussian``.
        hidden: hidden units of ``mlp``.
        lr: AdamW learning rate of ``linear`` / ``mlp``.
        steps: AdamW steps per fit of ``linear`` / ``mlp``.
        decay: AdamW weight decay of ``linear`` / ``mlp``.
        kernel_scale: bandwidth scale of ``kernel``.
        n_kernels: RBF kernels of ``kernel``.
        sample: references per class of ``kernel`` (0: all).
    """
    if family == "kernel":
        return KernelQ(n_classes, kernel_scale, n_kernels, sample, seed)
    if family == "gaussian":
        return GaussianQ(n_classes, shrinkage)
    if family in ("linear", "mlp"):
        return NeuralQ(origin.shape[1], n_classes, hidden if family == "mlp" else 0,
                       origin.mean(0), origin.std(0).clamp_min(1e-8), seed, lr=lr,
                       steps=steps, decay=decay)
    raise ConfigError(f"unknown variational family {family!r}; available: "
                      f"{', '.join(FAMILIES)}")
