"""The recommender architectures federated here: what is shared, what stays on a client.

Each architecture splits its parameters three ways:

- **item tables** (shared): one row per item; a client touches only its rows.
- **dense** (shared): the interaction function's weights (NCF's MLP tower and output).
- **private** (one row per client): the user embedding, or PFedRec's score function.

``logits`` computes a batch of clients at once with per-client copies of the shared
parameters (``(B, ...)`` tensors), so one backward pass yields each client's own gradient:
the dense layers run as batched matrix products (``baddbmm``) and never mix clients.
``score`` ranks every item for a batch of clients from the shared (server) parameters.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

# Bound on (clients × items × hidden) activations materialised at once when scoring.
SCORE_BLOCK = 1 << 22


class Architecture(Protocol):
    """A federated recommender's parameters and forward pass (see the module docstring)."""

    item_tables: dict[str, int]
    private_shapes: dict[str, tuple[int, ...]]

    def init_shared(self, n_items: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh shared parameters (item tables and dense), drawn from ``gen``."""
        ...

    def private_scale(self, name: str) -> float:
        """Standard deviation of the normal initialisation of private parameter ``name``."""
        ...

    def logits(self, rows: dict[str, torch.Tensor], dense: dict[str, torch.Tensor],
               private: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, L)`` logits from per-row item vectors ``(B, L, w)``, per-client dense
        ``(B, ...)`` and private ``(B, ...)`` parameters."""
        ...

    def score(self, shared: dict[str, torch.Tensor],
              private: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, n_items)`` logits of every item for ``B`` clients."""
        ...


class _ItemTable:
    """An architecture whose only shared parameter is one item table ``"item"``."""

    def __init__(self, dim: int, init_scale: float) -> None:
        self.dim = dim
        self.init_scale = init_scale
        self.item_tables = {"item": dim}

    def init_shared(self, n_items: int, gen: torch.Generator) -> dict[str, torch.Tensor]:  # noqa: D102
        return {"item": torch.randn(n_items, self.dim, generator=gen) * self.init_scale}


class MF(_ItemTable):
    """Matrix factorisation (FedMF): ``logit(u, i) = p_u · q_i``; ``p`` private, ``q`` shared."""

    def __init__(self, dim: int, init_scale: float) -> None:
        super().__init__(dim, init_scale)
        self.private_shapes = {"user": (dim,)}

    def private_scale(self, name: str) -> float:  # noqa: D102
        return self.init_scale

    def logits(self, rows, dense, private):  # noqa: D102
        return (rows["item"] * private["user"][:, None, :]).sum(-1)

    def score(self, shared, private):  # noqa: D102
        return private["user"] @ shared["item"].T


class NCF:
    """NeuMF as federated by FedNCF and FedRecGEL (He et al., WWW 2017).

    ``logit = h · [p^G_u ⊙ q^G_i, MLP([p^M_u, q^M_i])] + b``. The user's GMF and MLP
    embeddings are private; item embeddings, the MLP tower and the output layer are
    shared. Dense layers: Xavier-uniform weights, zero biases; embeddings ``N(0, s²)``.
    """

    def __init__(self, gmf_dim: int, mlp_dim: int, layers: tuple[int, ...],
                 init_scale: float) -> None:
        self.gmf_dim, self.mlp_dim, self.layers = gmf_dim, mlp_dim, tuple(layers)
        self.init_scale = init_scale
        self.item_tables = {"item_gmf": gmf_dim, "item_mlp": mlp_dim}
        self.private_shapes = {"user_gmf": (gmf_dim,), "user_mlp": (mlp_dim,)}

    def init_shared(self, n_items: int, gen: torch.Generator) -> dict[str, torch.Tensor]:  # noqa: D102
        s = self.init_scale
        out = {"item_gmf": torch.randn(n_items, self.gmf_dim, generator=gen) * s,
               "item_mlp": torch.randn(n_items, self.mlp_dim, generator=gen) * s}
        fan_in = 2 * self.mlp_dim
        for k, width in enumerate(self.layers):
            bound = math.sqrt(6.0 / (fan_in + width))
            out[f"mlp.{k}.weight"] = (torch.rand(width, fan_in, generator=gen) * 2 - 1) * bound
            out[f"mlp.{k}.bias"] = torch.zeros(width)
            fan_in = width
        width = self.gmf_dim + self.layers[-1]
        bound = math.sqrt(6.0 / (width + 1))
        out["out.weight"] = (torch.rand(width, generator=gen) * 2 - 1) * bound
        out["out.bias"] = torch.zeros(1)
        return out

    def private_scale(self, name: str) -> float:  # noqa: D102
        return self.init_scale

    def logits(self, rows, dense, private):  # noqa: D102
        m = self.mlp_dim
        phi = private["user_gmf"][:, None, :] * rows["item_gmf"]
        # W₀[p, q] = W₀ᵤ p + W₀ᵢ q: the user's half once per client, not once per row.
        w0 = dense["mlp.0.weight"]
        from_user = torch.bmm(w0[:, :, :m], private["user_mlp"][:, :, None])[:, None, :, 0]
        x = torch.relu(torch.baddbmm(from_user + dense["mlp.0.bias"][:, None, :],
                                     rows["item_mlp"], w0[:, :, m:].transpose(1, 2)))
        for k in range(1, len(self.layers)):
            x = torch.relu(torch.baddbmm(dense[f"mlp.{k}.bias"][:, None, :], x,
                                         dense[f"mlp.{k}.weight"].transpose(1, 2)))
        feats = torch.cat([phi, x], dim=-1)
        return (feats * dense["out.weight"][:, None, :]).sum(-1) + dense["out.bias"]

    def score(self, shared, private):  # noqa: D102
        m = self.mlp_dim
        w0 = shared["mlp.0.weight"]
        from_user = private["user_mlp"] @ w0[:, :m].T
        from_item = shared["item_mlp"] @ w0[:, m:].T + shared["mlp.0.bias"]
        w_out = shared["out.weight"]
        gmf = private["user_gmf"] @ (shared["item_gmf"] * w_out[:self.gmf_dim]).T
        n_users, n_items = len(from_user), len(from_item)
        out = torch.empty(n_users, n_items)
        step = max(1, SCORE_BLOCK // max(1, n_items * self.layers[0]))
        for lo in range(0, n_users, step):
            x = torch.relu(from_user[lo:lo + step, None, :] + from_item[None, :, :])
            for k in range(1, len(self.layers)):
                x = torch.relu(x @ shared[f"mlp.{k}.weight"].T + shared[f"mlp.{k}.bias"])
            out[lo:lo + step] = x @ w_out[self.gmf_dim:] + gmf[lo:lo + step]
        return out + shared["out.bias"]


class ScoreFunction(_ItemTable):
    """PFedRec's user-free model (Zhang et al., IJCAI 2023): ``logit = w_u · q_i + b_u``.

    The score function ``(w_u, b_u)`` is private (one per client); the item table is
    shared. ``w`` starts ``N(0, 1/d)`` (close to ``nn.Linear``'s default scale), ``b`` at 0.
    """

    def __init__(self, dim: int, init_scale: float) -> None:
        super().__init__(dim, init_scale)
        self.private_shapes = {"weight": (dim,), "bias": (1,)}

    def private_scale(self, name: str) -> float:  # noqa: D102
        return 1.0 / math.sqrt(self.dim) if name == "weight" else 0.0

    def logits(self, rows, dense, private):  # noqa: D102
        return (rows["item"] * private["weight"][:, None, :]).sum(-1) + private["bias"]

    def score(self, shared, private):  # noqa: D102
        return private["weight"] @ shared["item"].T + private["bias"]
