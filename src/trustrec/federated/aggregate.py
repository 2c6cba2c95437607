"""Server-side aggregation of client uploads, and the server optimiser.

Aggregators follow Flower's definitions (``flwr.server.strategy.aggregate``), so that the
same option means the same thing in both runtimes (a test checks each against Flower's
function on the same uploads):

- ``mean``: the average upload (``weighting="uniform"``, as FedRecGEL's server does) or
  the example-weighted average (``"examples"``, FedAvg's weights).
- ``median``: the coordinate-wise median (Flower's FedMedian; Yin et al., ICML 2018).
- ``trimmed_mean``: the coordinate-wise mean after cutting ``int(trim · n)`` uploads from
  each end (Flower's FedTrimmedAvg).
- ``krum``: the one upload whose ``n − f − 2`` nearest uploads (squared Euclidean) are
  closest (Blanchard et al., NeurIPS 2017); with ``keep > 0`` the mean of the ``keep``
  best (Multi-Krum, uniformly weighted here: Flower weights by examples).

A recommendation upload is sparse (a client touches a few item rows); ``mean`` adds the
rows as they come, while the robust aggregators need every upload as one dense vector
(untouched rows are zero, as in a dense federated model), so they hold ``n × P`` floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from trustrec.errors import ConfigError

Aggregator = Literal["mean", "median", "trimmed_mean", "krum"]
AGGREGATORS: tuple[str, ...] = ("mean", "median", "trimmed_mean", "krum")


def robust_aggregate(uploads: np.ndarray, how: str, *, trim: float = 0.1,
                     malicious: int = 0, keep: int = 0) -> np.ndarray:
    """Aggregate ``uploads`` (``n × P``, one dense vector per client) robustly.

    Args:
        uploads: one row per client.
        how: ``median``, ``trimmed_mean`` or ``krum``.
        trim: share cut from each end by ``trimmed_mean`` (in [0, 0.5)).
        malicious: Krum's assumed number of Byzantine clients ``f``.
        keep: Multi-Krum's number of uploads averaged (0: plain Krum, one upload).

    Returns:
        The ``P``-vector aggregate.
    """
    n = len(uploads)
    if n == 0:
        raise ConfigError("cannot aggregate: no client uploaded anything this round")
    if how == "median":
        return np.median(uploads, axis=0)
    if how == "trimmed_mean":
        if not 0.0 <= trim < 0.5:
            raise ConfigError(f"trim must be in [0, 0.5), got {trim}")
        low = int(trim * n)
        part = np.partition(uploads, (low, n - low - 1), axis=0)
        return part[low:n - low].mean(axis=0)
    if how == "krum":
        if keep > n:
            raise ConfigError(f"Multi-Krum keeps {keep} uploads but only {n} clients took "
                              "part in the round")
        u = uploads.astype(np.float64)
        sq = (u ** 2).sum(1)
        dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * u @ u.T, 0.0)
        closest = max(1, n - malicious - 2)
        scores = np.sort(dist, axis=1)[:, 1:closest + 1].sum(1)
        if keep > 0:
            best = np.argsort(scores, kind="stable")[:keep]
            return uploads[best].mean(axis=0)
        return uploads[int(np.argmin(scores))]
    raise ConfigError(f"unknown aggregator {how!r}; choose one of {', '.join(AGGREGATORS)}")


@dataclass
class ServerOptimizer:
    """The server's step on the aggregated pseudo-gradient (Reddi et al., ICLR 2021).

    ``sgd`` with lr 1 on averaged deltas is FedAvg; ``adam`` is FedAdam / the Adam step of
    FedRecGEL's server (β = (0.9, 0.999), ε = 1e-8, bias-corrected as ``torch.optim.Adam``).
    Its state is plain tensors (saved with the federation's checkpoint).
    """

    kind: Literal["sgd", "adam"]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Update ``params`` in place by ``grads`` (same keys)."""
        if self.kind == "sgd":
            for name, g in grads.items():
                params[name].sub_(g, alpha=self.lr)
            return
        t = self.state.get("step", torch.zeros(())) + 1.0
        self.state["step"] = t
        for name, g in grads.items():
            if f"m.{name}" not in self.state:
                self.state[f"m.{name}"] = torch.zeros_like(g)
                self.state[f"v.{name}"] = torch.zeros_like(g)
            params[name] = adam_update(params[name], g, self.state[f"m.{name}"],
                                       self.state[f"v.{name}"], t, self.lr, self.betas,
                                       self.eps)


def adam_update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                step: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                eps: float = 1e-8) -> torch.Tensor:
    """One Adam step (``torch.optim.Adam``'s arithmetic): updates the moments ``m`` and
    ``v`` in place and returns the new parameter. ``step`` (the 1-based step count, after
    this step) broadcasts against ``param``, so each client can carry its own count."""
    b1, b2 = betas
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    denom = (v / (1 - b2 ** step)).sqrt_().add_(eps)
    return param - (lr / (1 - b1 ** step)) * m / denom
