"""The server side of the core: state, client sampling, collecting uploads, one round.

A round (:func:`run_round`): sample clients (seeded by the round), let them train
(:func:`~trustrec.federated.local.local_update`, batched by the runtime), aggregate their
uploads (:class:`Collector`), and take the server optimiser's step. The in-process
runtime calls :func:`run_round`; the Flower runtime runs the same pieces across
messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from trustrec.errors import ConfigError
from trustrec.federated.aggregate import ServerOptimizer, robust_aggregate
from trustrec.federated.arch import Architecture
from trustrec.federated.clients import ClientData, Work, build_work, chunks_by_size
from trustrec.federated.keyed import keyed_normal, stream_key
from trustrec.federated.local import (
    LocalOptions,
    LocalResult,
    local_update,
    per_client,
    private_state_names,
)
from trustrec.seeding import child_seed, rng


@dataclass(frozen=True)
class ServerOptions:
    """How the server samples, aggregates and steps.

    Attributes:
        participation: share of clients sampled per round, in (0, 1].
        aggregator: ``mean``, ``sum`` or a robust one of
            :func:`~trustrec.federated.aggregate.robust_aggregate`.
        weighting: ``mean``'s weights: ``uniform`` or ``examples`` (training rows).
        trim, malicious, keep: the robust aggregators' options.
        optimizer, lr: the server optimiser on the aggregated upload.
        n_neg: negatives per positive drawn by each client.
        max_rows: the simulator's batch budget, in rows of item vectors: clients × (the
            longest client's rows + each client's copy of the dense layers).
    """

    participation: float = 0.1
    aggregator: str = "mean"
    weighting: str = "uniform"
    trim: float = 0.1
    malicious: int = 0
    keep: int = 0
    optimizer: str = "adam"
    lr: float = 0.001
    n_neg: int = 4
    max_rows: int = 1 << 14


@dataclass
class FederationState:
    """Everything a federation holds after ``round`` rounds (saved by checkpoints).

    Attributes:
        shared: the server's shared parameters.
        private: every client's private parameters and optimiser state, ``(n_clients, ...)``.
        server: the server optimiser (with its state).
        round: rounds completed.
    """

    shared: dict[str, torch.Tensor]
    private: dict[str, torch.Tensor]
    server: ServerOptimizer
    round: int = 0


def sample_clients(members: np.ndarray, participation: float, seed: int, round_: int
                   ) -> np.ndarray:
    """The clients of round ``round_``: ``max(1, round(p · n))`` drawn without replacement
    by a generator keyed on ``(seed, round)``, sorted."""
    if not 0.0 < participation <= 1.0:
        raise ConfigError(f"participation must be in (0, 1], got {participation}")
    n = len(members)
    m = max(1, int(round(participation * n)))
    if m >= n:
        return np.asarray(members, dtype=np.int64).copy()
    pick = rng(seed, "federated", "sample", round_).choice(n, size=m, replace=False)
    return np.sort(np.asarray(members, dtype=np.int64)[pick])


def initial_private(arch: Architecture, opts: LocalOptions, clients: np.ndarray, seed: int
                    ) -> dict[str, torch.Tensor]:
    """Private state of ``clients`` before their first round: parameters drawn by keyed
    normals of ``(client, position)`` (the same alone or batched), optimiser state zero."""
    clients = np.asarray(clients, dtype=np.int64)
    out: dict[str, torch.Tensor] = {}
    for name, shape in arch.private_shapes.items():
        width = int(np.prod(shape))
        key = stream_key(seed, "federated", "private", name)
        draws = keyed_normal(key, clients[:, None], np.arange(width)[None, :])
        out[name] = torch.from_numpy(
            (draws * arch.private_scale(name)).astype(np.float32)).view(len(clients), *shape)
    for name in private_state_names(arch, opts):
        if name not in out:
            base = name.split(".", 1)[1] if "." in name else None
            shape = arch.private_shapes[base] if base else (1,)
            out[name] = torch.zeros(len(clients), *shape)
    return out


def initial_state(arch: Architecture, opts: LocalOptions, server: ServerOptions,
                  n_clients: int, n_items: int, seed: int) -> FederationState:
    """Round-0 state: shared parameters from a generator seeded by ``(seed, "shared")``."""
    gen = torch.Generator().manual_seed(child_seed(seed, "federated", "shared"))
    shared = {n: t.float().contiguous() for n, t in arch.init_shared(n_items, gen).items()}
    private = initial_private(arch, opts, np.arange(n_clients), seed)
    return FederationState(shared=shared, private=private,
                           server=ServerOptimizer(server.optimizer, server.lr))


@dataclass
class Collector:
    """Sums uploads as they come (``mean``/``sum``) or keeps one dense vector per client
    (robust aggregators), then aggregates (:meth:`result`)."""

    shared: dict[str, torch.Tensor]
    item_tables: tuple[str, ...]
    options: ServerOptions
    _sums: dict[str, torch.Tensor] = field(default_factory=dict)
    _weight: float = 0.0
    _vectors: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def robust(self) -> bool:  # noqa: D102
        return self.options.aggregator not in ("mean", "sum")

    def add(self, work: Work, result: LocalResult) -> None:
        """Take the uploads of the clients of ``work``."""
        self.add_uploads(work.clients, work.items, work.item_mask, work.n_rows, result)

    def add_uploads(self, clients: torch.Tensor, items: torch.Tensor, item_mask: torch.Tensor,
                    n_rows: torch.Tensor, result: LocalResult) -> None:
        """Take uploads of ``clients`` (their item ids, mask and row counts as in
        :class:`~trustrec.federated.clients.Work`)."""
        if self.robust:
            self._add_dense(clients, items, item_mask, result)
            return
        if self.options.aggregator == "mean" and self.options.weighting == "examples":
            w = n_rows.to(torch.float32)
        else:
            w = torch.ones(len(clients))
        for name, up in result.item_uploads.items():
            acc = self._sums.setdefault(name, torch.zeros_like(self.shared[name]))
            acc.index_add_(0, items[item_mask], (up * w[:, None, None])[item_mask])
        for name, up in result.dense_uploads.items():
            acc = self._sums.setdefault(name, torch.zeros_like(self.shared[name]))
            acc.add_((up * per_client(w, up)).sum(0))
        self._weight += float(w.sum())

    def _add_dense(self, clients: torch.Tensor, items: torch.Tensor, item_mask: torch.Tensor,
                   result: LocalResult) -> None:
        for i, client in enumerate(clients.tolist()):
            parts = []
            for name in self.shared:
                if name in result.item_uploads:
                    dense = torch.zeros_like(self.shared[name])
                    m = item_mask[i]
                    dense[items[i][m]] = result.item_uploads[name][i][m]
                    parts.append(dense.flatten())
                else:
                    parts.append(result.dense_uploads[name][i].flatten())
            self._vectors.append((client, torch.cat(parts).numpy()))

    def result(self) -> dict[str, torch.Tensor]:
        """The aggregated upload, per shared parameter."""
        opts = self.options
        if not self.robust:
            if self._weight == 0:
                raise ConfigError("cannot aggregate: no client uploaded anything this round")
            div = self._weight if opts.aggregator == "mean" else 1.0
            return {n: s / div for n, s in self._sums.items()}
        self._vectors.sort(key=lambda cv: cv[0])
        stacked = np.stack([v for _, v in self._vectors]) if self._vectors else np.zeros((0, 0))
        flat = robust_aggregate(stacked, opts.aggregator, trim=opts.trim,
                                malicious=opts.malicious, keep=opts.keep)
        out, at = {}, 0
        for name, t in self.shared.items():
            out[name] = torch.from_numpy(
                np.ascontiguousarray(flat[at:at + t.numel()], dtype=np.float32)).view_as(t)
            at += t.numel()
        return out


def apply_round(state: FederationState, update: dict[str, torch.Tensor]) -> None:
    """The server optimiser's step on the aggregated upload; the round is done."""
    state.server.step(state.shared, update)
    state.round += 1


def train_clients(arch: Architecture, opts: LocalOptions, data: ClientData,
                  state: FederationState, clients: np.ndarray, key: int, round_: int,
                  server: ServerOptions, collector: Collector,
                  batches: Callable[[np.ndarray], Iterable[np.ndarray]] | None = None
                  ) -> torch.Tensor:
    """Local training of ``clients`` in batches of similar size (the in-process runtime):
    uploads go to ``collector``, private state back into ``state``. Returns the clients'
    losses (in ``clients`` order)."""
    losses = torch.zeros(len(clients))
    where = {int(c): i for i, c in enumerate(clients)}
    if batches is None:
        width = max(1, sum(arch.item_tables.values()))
        dense = sum(t.numel() for n, t in state.shared.items() if n not in arch.item_tables)
        groups = chunks_by_size(data, clients, server.n_neg, server.max_rows,
                                per_client=-(-dense // width))
    else:
        groups = batches(clients)
    for group in groups:
        work = build_work(data, group, key, round_, server.n_neg)
        idx = work.clients
        private = {n: t[idx] for n, t in state.private.items()}
        result = local_update(arch, opts, state.shared, private, work)
        for n, t in result.private.items():
            state.private[n][idx] = t
        collector.add(work, result)
        losses[[where[int(c)] for c in group]] = result.loss
    return losses


def run_round(arch: Architecture, opts: LocalOptions, data: ClientData,
              state: FederationState, members: np.ndarray, server: ServerOptions,
              seed: int) -> dict[str, float]:
    """One round of the in-process runtime; returns the round's mean client loss and size."""
    round_ = state.round
    clients = sample_clients(members, server.participation, seed, round_)
    collector = Collector(state.shared, tuple(arch.item_tables), server)
    key = stream_key(seed, "federated", "negatives")
    losses = train_clients(arch, opts, data, state, clients, key, round_, server, collector)
    apply_round(state, collector.result())
    return {"round": float(state.round), "clients": float(len(clients)),
            "loss": float(losses.mean())}
