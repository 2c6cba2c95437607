"""A round of local training for a batch of clients at once (the client side of the core).

Every client starts from the shared parameters it received and its own private state,
and trains on its own rows only. Batched, each client gets its own copy of the shared
parameters it reads (its item rows, the dense layers), so one backward pass gives every
client its own gradient; nothing is mixed across clients. The Flower runtime calls the
same function with a batch of one.

Options (:class:`LocalOptions`):

- ``upload="gradient"``: one local step; the client uploads the gradient of its loss
  with respect to the shared parameters at the received point (FedMF, FedNCF and
  FedRecGEL as released). ``upload="delta"``: ``local_epochs`` full-batch SGD steps on
  the client's copy, and the upload is ``received − trained`` (FedAvg's pseudo-gradient:
  a server SGD step of lr 1 on the mean delta is FedAvg; PFedRec).
- Private parameters take a step per local epoch with SGD, or with Adam whose moments
  are kept per client between rounds (FedRecGEL's "persistent" user optimiser).
- ``alternate``: step the private parameters first, then recompute the loss for the
  shared gradient (PFedRec's order: score function, then item embedding).
- ``rho_shared`` / ``rho_private``: client-side SAM with a radius per group (FedRecGEL).
  The base gradient ``g`` is computed once; each group with a positive radius is then
  perturbed alone by ``ρ g_grp / ‖g_grp‖`` (the norm over the whole group, per client),
  the loss recomputed at that point, and the group's gradient taken from there: three
  passes when both radii are positive, as in the released code.
- Loss per client: BCE-with-logits summed over its rows, times ``loss_scale``
  (``reduction="sum"``), or averaged over them (``"mean"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from trustrec.errors import ConfigError
from trustrec.federated.aggregate import adam_update
from trustrec.federated.arch import Architecture
from trustrec.federated.clients import Work


@dataclass(frozen=True)
class LocalOptions:
    """How a client trains in a round (see the module docstring)."""

    upload: Literal["gradient", "delta"] = "gradient"
    local_epochs: int = 1
    local_lr: float = 0.1
    private_optimizer: Literal["sgd", "adam"] = "sgd"
    private_lr: float = 0.1
    alternate: bool = False
    rho_shared: float = 0.0
    rho_private: float = 0.0
    reduction: Literal["sum", "mean"] = "mean"
    loss_scale: float = 1.0
    reg: float = 0.0

    def __post_init__(self) -> None:
        if self.upload == "gradient" and self.local_epochs != 1:
            raise ConfigError("a gradient upload is taken at the received point: one local "
                              f"epoch, not {self.local_epochs} (use upload='delta')")
        if self.alternate and self.rho_shared > 0:
            raise ConfigError("alternate updates recompute the shared gradient after the "
                              "private step, which would discard the shared SAM gradient")


@dataclass
class LocalResult:
    """What a batch of clients hands back after a round.

    Attributes:
        item_uploads: per item table, ``(B, U, w)`` upload rows aligned with
            ``work.items`` (zero on padding).
        dense_uploads: per dense parameter, ``(B, ...)`` uploads.
        private: the clients' new private parameters and optimiser state ``(B, ...)``.
        loss: ``(B,)`` each client's loss at the received parameters (before training).
    """

    item_uploads: dict[str, torch.Tensor]
    dense_uploads: dict[str, torch.Tensor]
    private: dict[str, torch.Tensor]
    loss: torch.Tensor


def private_state_names(arch: Architecture, opts: LocalOptions) -> list[str]:
    """Private entries a client keeps: its parameters and, with Adam, their moments."""
    names = list(arch.private_shapes)
    if opts.private_optimizer == "adam":
        names += [f"adam_m.{n}" for n in arch.private_shapes]
        names += [f"adam_v.{n}" for n in arch.private_shapes]
        names.append("adam_step")
    return names


def _client_loss(arch: Architecture, opts: LocalOptions, work: Work,
                 items: dict[str, torch.Tensor], dense: dict[str, torch.Tensor],
                 private: dict[str, torch.Tensor]) -> torch.Tensor:
    b_idx = torch.arange(len(work.rows))[:, None]
    rows = {n: t[b_idx, work.rows] for n, t in items.items()}
    logits = arch.logits(rows, dense, private)
    bce = F.binary_cross_entropy_with_logits(logits, work.labels, reduction="none")
    loss = (bce * work.row_mask).sum(1)
    if opts.reduction == "mean":
        loss = loss / work.n_rows.to(loss.dtype)
    else:
        loss = loss * opts.loss_scale
    if opts.reg > 0:
        sq = sum((r ** 2).sum(-1) for r in rows.values()) * work.row_mask
        user = sum((p ** 2).flatten(1).sum(1) for p in private.values())
        loss = loss + 0.5 * opts.reg * (sq.sum(1) / work.n_rows.to(loss.dtype) + user)
    return loss


def _grads(loss: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss.sum(), leaves))


def _per_client_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return sq.sqrt()


def _perturbed(values: list[torch.Tensor], grads: list[torch.Tensor], rho: float
               ) -> list[torch.Tensor]:
    norm = _per_client_norm(grads) + 1e-12
    out = []
    for v, g in zip(values, grads, strict=True):
        out.append((v + g * per_client(rho / norm, g)).detach().requires_grad_(True))
    return out


def local_update(arch: Architecture, opts: LocalOptions, shared: dict[str, torch.Tensor],
                 private: dict[str, torch.Tensor], work: Work) -> LocalResult:
    """Train the clients of ``work`` locally and return their uploads (module docstring).

    Args:
        arch: the architecture.
        opts: local training options.
        shared: the server's shared parameters (not modified).
        private: the clients' private state, ``(B, ...)`` per entry of
            :func:`private_state_names` (not modified).
        work: the clients' padded rows for this round.
    """
    b = len(work.clients)
    item_names = list(arch.item_tables)
    dense_names = [n for n in shared if n not in arch.item_tables]
    private_names = list(arch.private_shapes)
    received_items = {n: shared[n][work.items] for n in item_names}
    received_dense = {n: shared[n].expand(b, *shared[n].shape) for n in dense_names}
    sh = [received_items[n].clone() for n in item_names] + \
        [received_dense[n].clone() for n in dense_names]
    pv = [private[n].clone() for n in private_names]
    state = {n: private[n].clone() for n in private if n not in arch.private_shapes}
    n_items = len(item_names)

    def loss_at(sh_vals: list[torch.Tensor], pv_vals: list[torch.Tensor]) -> torch.Tensor:
        return _client_loss(arch, opts, work,
                            dict(zip(item_names, sh_vals[:n_items], strict=True)),
                            dict(zip(dense_names, sh_vals[n_items:], strict=True)),
                            dict(zip(private_names, pv_vals, strict=True)))

    first_loss = None
    sh_grads: list[torch.Tensor] = []
    for _ in range(opts.local_epochs):
        sh_leaves = [t.detach().requires_grad_(True) for t in sh]
        pv_leaves = [t.detach().requires_grad_(True) for t in pv]
        loss = loss_at(sh_leaves, pv_leaves)
        if first_loss is None:
            first_loss = loss.detach()
        grads = torch.autograd.grad(loss.sum(), sh_leaves + pv_leaves)
        g_sh, g_pv = list(grads[:len(sh)]), list(grads[len(sh):])
        if opts.rho_shared > 0:
            moved = _perturbed(sh_leaves, g_sh, opts.rho_shared)
            g_sh = _grads(loss_at(moved, [p.detach() for p in pv_leaves]), moved)
        if opts.rho_private > 0:
            moved = _perturbed(pv_leaves, g_pv, opts.rho_private)
            g_pv = _grads(loss_at([s.detach() for s in sh_leaves], moved), moved)
        with torch.no_grad():
            pv = _private_step(opts, private_names, pv, g_pv, state)
        if opts.alternate:
            pv_fixed = [p.detach() for p in pv]
            sh_leaves = [t.detach().requires_grad_(True) for t in sh]
            g_sh = _grads(loss_at(sh_leaves, pv_fixed), sh_leaves)
        if opts.upload == "gradient":
            sh_grads = [g.detach() for g in g_sh]
            break
        with torch.no_grad():
            sh = [s.detach() - opts.local_lr * g for s, g in zip(sh, g_sh, strict=True)]
    with torch.no_grad():
        if opts.upload == "gradient":
            uploads = sh_grads
        else:
            received = [received_items[n] for n in item_names] + \
                [received_dense[n] for n in dense_names]
            uploads = [r - s for r, s in zip(received, sh, strict=True)]
        mask = work.item_mask[:, :, None].to(uploads[0].dtype) if n_items else None
        item_up = {n: uploads[i] * mask for i, n in enumerate(item_names)}
        dense_up = {n: uploads[n_items + i] for i, n in enumerate(dense_names)}
        new_private = dict(zip(private_names, (p.detach() for p in pv), strict=True))
        new_private.update(state)
    assert first_loss is not None
    return LocalResult(item_uploads=item_up, dense_uploads=dense_up, private=new_private,
                       loss=first_loss)


def _private_step(opts: LocalOptions, names: list[str], values: list[torch.Tensor],
                  grads: list[torch.Tensor], state: dict[str, torch.Tensor]
                  ) -> list[torch.Tensor]:
    """One private step per client: SGD, or Adam with the client's own moments and step
    count in ``state``."""
    if opts.private_optimizer == "sgd":
        return [v - opts.private_lr * g for v, g in zip(values, grads, strict=True)]
    step = state["adam_step"] + 1.0
    state["adam_step"] = step
    out = []
    for name, v, g in zip(names, values, grads, strict=True):
        m, s = state[f"adam_m.{name}"].clone(), state[f"adam_v.{name}"].clone()
        out.append(adam_update(v, g, m, s, per_client(step, g), opts.private_lr))
        state[f"adam_m.{name}"], state[f"adam_v.{name}"] = m, s
    return out


def per_client(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (one per client, ``(B,)`` or ``(B, 1)``) shaped to broadcast against
    ``like`` ``(B, ...)``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))
