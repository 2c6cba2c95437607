"""Federated classification on the federated core: FedAvg of a small softmax model over
clients that each hold rows of a table, each method a :class:`RoundProtocol` (what a
client uploads, what the server broadcasts, what a client then minimises) that both
runtimes run — :func:`fit_federated_classifier` in process and
:func:`~trustrec.federated.flower_classify.run_flower_classifier` on Flower.

The fair-classification methods (FedFACT in-processing, WassFFed) and class-wise
federated unlearning (FedAF) are all FedAvg with a different **local task** per round:
soft targets ``T`` (``−Σ_j T_ij log softmax_j`` — one-hot rows are cross-entropy,
cost-weighted rows are cost-sensitive cross-entropy, negative rows are gradient ascent),
an optional L1 pull of the positive-class probability toward a per-row target (WassFFed),
and an optional elastic anchor ``(λ/2) Σ F (θ − θ*)²`` (EWC, FedAF). The server pieces are
the recommendation federation's own: :func:`~trustrec.federated.server.sample_clients`
and :class:`~trustrec.federated.aggregate.ServerOptimizer` (``sgd`` with lr 1 on the
row-weighted mean delta is FedAvg).

Features are standardised by the federation's pooled mean and standard deviation, which
the server gets from per-client sums (:func:`federated_scaler`); no raw row travels.
Everything a client draws (its minibatch order) is keyed on ``(seed, round, client)``,
so a client's update depends on nothing else: the same seed gives the same model
whatever the order clients run in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    one_of,
    typed_config,
)
from trustrec.errors import ConfigError
from trustrec.federated.aggregate import ServerOptimizer
from trustrec.federated.server import sample_clients
from trustrec.seeding import rng

Params = dict[str, torch.Tensor]


@typed_config
class ClassifierConfig:
    """FedAvg of a softmax classifier.

    Attributes:
        hidden: width of the one hidden ReLU layer; 0 is multinomial logistic regression.
        rounds: communication rounds.
        participation: share of clients per round (keyed on seed and round).
        local_epochs: passes over the local rows per round.
        batch_size: local minibatch size.
        lr: local SGD step.
        weight_decay: local L2 penalty.
        server_optimizer: ``sgd`` (lr 1 is FedAvg) or ``adam`` (FedAdam).
        server_lr: the server step.
        init_scale: standard deviation of the initial weights.
    """

    hidden: NonNegativeInt = 0
    rounds: PositiveInt = 30
    participation: UnitInterval = 1.0
    local_epochs: PositiveInt = 1
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.1
    weight_decay: NonNegativeFloat = 0.0
    server_optimizer: Annotated[str, one_of(("sgd", "adam"), "server optimizer")] = "sgd"
    server_lr: PositiveFloat = 1.0
    init_scale: PositiveFloat = 0.01


@dataclass
class LocalTask:
    """What one client minimises in one round (see the module docstring).

    Attributes:
        targets: ``(n_k, n_out)`` soft targets of the client's rows.
        score_target: ``(n_k,)`` target of the positive-class probability, or None.
        score_weight: weight of the L1 pull toward ``score_target``.
        positive: the class whose probability ``score_target`` aims at.
        anchor: ``θ*`` of the elastic penalty, or None.
        fisher: the diagonal Fisher information per parameter (with ``anchor``).
        anchor_weight: λ of ``(λ/2) Σ F (θ − θ*)²``.
    """

    targets: torch.Tensor
    score_target: torch.Tensor | None = None
    score_weight: float = 0.0
    positive: int = 1
    anchor: Params | None = None
    fisher: Params | None = None
    anchor_weight: float = 0.0


def init_params(n_in: int, n_out: int, cfg: ClassifierConfig, seed: int) -> Params:
    """Initial weights (normal, ``init_scale``; keyed on ``seed``), biases zero."""
    gen = rng(seed, "fedclf", "init")
    shapes = ([(n_in, n_out)] if cfg.hidden == 0 else [(n_in, cfg.hidden), (cfg.hidden, n_out)])
    out: Params = {}
    for i, shape in enumerate(shapes):
        out[f"w{i}"] = torch.from_numpy(gen.normal(0.0, cfg.init_scale, shape).astype(np.float32))
        out[f"b{i}"] = torch.zeros(shape[1])
    return out


def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits of the rows ``x``."""
    h = x
    layers = len(params) // 2
    for i in range(layers):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < layers - 1:
            h = torch.relu(h)
    return h


@torch.no_grad()
def predict_proba(params: Params, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(n, n_out)`` softmax probabilities."""
    x = torch.as_tensor(x, dtype=torch.float32)
    return torch.softmax(forward(params, x), dim=1).numpy().astype(np.float64)


def task_loss(params: Params, x: torch.Tensor, task: LocalTask, rows: torch.Tensor
              ) -> torch.Tensor:
    """The local objective on the minibatch ``rows`` of the client's ``x``."""
    logp = torch.log_softmax(forward(params, x[rows]), dim=1)
    loss = -(task.targets[rows] * logp).sum(1).mean()
    if task.score_target is not None and task.score_weight > 0:
        p = logp[:, task.positive].exp()
        loss = loss + task.score_weight * (p - task.score_target[rows]).abs().mean()
    if task.anchor is not None and task.anchor_weight > 0:
        assert task.fisher is not None
        pen = sum((task.fisher[k] * (params[k] - task.anchor[k]) ** 2).sum() for k in params)
        loss = loss + 0.5 * task.anchor_weight * pen
    return loss


def local_train(params: Params, x: torch.Tensor, task: LocalTask, cfg: ClassifierConfig,
                seed: int, round_: int, client: int) -> Params:
    """One client's round: ``local_epochs`` of minibatch SGD from the global ``params``;
    the row order is keyed on ``(seed, round, client)``."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.SGD(list(p.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = rng(seed, "fedclf", "order", round_, client)
    n = len(x)
    for _ in range(cfg.local_epochs):
        order = torch.from_numpy(gen.permutation(n))
        for start in range(0, n, cfg.batch_size):
            loss = task_loss(p, x, task, order[start:start + cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {k: v.detach() for k, v in p.items()}


def federated_scaler(x: np.ndarray, clients: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean and standard deviation of the clients' rows from per-client sums
    (count, Σx, Σx²) — what a secure-sum protocol would give the server. A constant
    column gets standard deviation 1."""
    count = sum(len(c) for c in clients)
    s1 = sum(x[c].astype(np.float64).sum(0) for c in clients)
    s2 = sum((x[c].astype(np.float64) ** 2).sum(0) for c in clients)
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean ** 2, 0.0))
    return mean, np.where(std > 1e-12, std, 1.0)


ClientState = dict[str, np.ndarray]
Stats = dict[str, np.ndarray]
RoundHook = Callable[[int, Params], None]


class RoundProtocol:
    """What each side of a federated classification method computes in a round; both
    runtimes (:func:`fit_federated_classifier` in process, :mod:`~trustrec.federated.
    flower_classify` on Flower) run the same protocol:

    1. every client ``k`` computes ``client_stats(k, round, params, state_k)`` on its own
       rows (what it uploads besides its model; may update its persistent ``state_k``);
    2. the server turns the uploads into ``broadcast(round, params, stats)``;
    3. each sampled client trains on ``client_task(k, round, params, shared, state_k)``.

    ``state_k`` is a dict of arrays that lives with client ``k`` between rounds and never
    travels. The base class uploads nothing and broadcasts nothing.
    """

    #: Whether step 1 runs at all (skipped, with no message, when False).
    uses_stats: bool = False

    def __init__(self, x: Sequence[torch.Tensor], ids: Sequence[int] | None = None) -> None:
        if not x:
            raise ConfigError("a federation needs at least one client")
        if any(len(xk) == 0 for xk in x):
            raise ConfigError("every client needs at least one row")
        self.x = list(x)
        #: The client ids that key each client's draws (a sub-federation keeps its
        #: members' own ids).
        self.ids = list(range(len(x))) if ids is None else [int(i) for i in ids]

    @property
    def n_clients(self) -> int:  # noqa: D102
        return len(self.x)

    def client_stats(self, client: int, round_: int, params: Params, state: ClientState
                     ) -> Stats:
        """Client side: this round's upload (default: nothing)."""
        return {}

    def broadcast(self, round_: int, params: Params, stats: list[Stats]) -> Stats:
        """Server side: what every client receives with the model (default: nothing)."""
        return {}

    def client_task(self, client: int, round_: int, params: Params, shared: Stats,
                    state: ClientState) -> LocalTask:
        """Client side: this round's local objective."""
        raise NotImplementedError


class StaticTasks(RoundProtocol):
    """The same local task every round (FedAvg and its kin)."""

    def __init__(self, x: Sequence[torch.Tensor], tasks: Sequence[LocalTask],
                 ids: Sequence[int] | None = None) -> None:
        super().__init__(x, ids)
        self.tasks = list(tasks)

    def client_task(self, client: int, round_: int, params: Params, shared: Stats,
                    state: ClientState) -> LocalTask:  # noqa: D102
        return self.tasks[client]


def fedavg_step(params: Params, updates: Sequence[tuple[int, Params]], server: ServerOptimizer
                ) -> None:
    """Aggregate ``(rows, new params)`` uploads — in client order, weighted by rows —
    into the server's step on ``params`` (in place)."""
    total = float(sum(n for n, _ in updates))
    delta = {k: torch.zeros_like(v) for k, v in params.items()}
    for n, new in updates:
        for name in delta:
            delta[name] += (n / total) * (params[name] - new[name])
    server.step(params, delta)


def check_finite(params: Params, round_: int) -> None:
    """Raise when training diverged."""
    if not all(torch.isfinite(v).all() for v in params.values()):
        raise ConfigError(f"federated training diverged at round {round_} (non-finite "
                          "weights); lower lr")


def start_params(protocol: RoundProtocol, n_out: int, cfg: ClassifierConfig, seed: int,
                 init: Params | None) -> Params:
    """A copy of ``init``, or fresh weights keyed on ``seed``.

    Raises:
        ConfigError: ``init`` with the server's Adam (its moments are not carried over, so
            a continuation would not continue).
    """
    if init is None:
        return init_params(protocol.x[0].shape[1], n_out, cfg, seed)
    if cfg.server_optimizer == "adam":
        raise ConfigError("continuing from given weights restarts the server's Adam moments; "
                          "use server_optimizer = 'sgd' for a continuation")
    return {k: v.clone() for k, v in init.items()}


def fit_federated_classifier(protocol: RoundProtocol, n_out: int, cfg: ClassifierConfig,
                             seed: int, *, init: Params | None = None,
                             rounds: int | None = None, first_round: int = 0,
                             on_round: RoundHook | None = None) -> Params:
    """FedAvg of a :class:`RoundProtocol`, in process.

    Args:
        protocol: the method's rounds (each client's rows, uploads, broadcast, task).
        n_out: number of outputs.
        cfg: options.
        seed: root seed (initial weights, client sampling, minibatch orders).
        init: start from these weights instead of a fresh draw (server SGD only).
        rounds: how many rounds (default ``cfg.rounds``).
        first_round: the index of the first round (keys its draws; a continuation starts
            where the last run stopped).
        on_round: called after each round with ``(round, params)``.

    Returns:
        The final global weights.
    """
    params = start_params(protocol, n_out, cfg, seed, init)
    server = ServerOptimizer(cfg.server_optimizer, cfg.server_lr)
    members = np.arange(protocol.n_clients)
    states: list[ClientState] = [{} for _ in members]
    for r in range(first_round, first_round + (cfg.rounds if rounds is None else rounds)):
        stats = ([protocol.client_stats(int(k), r, params, states[k]) for k in members]
                 if protocol.uses_stats else [])
        shared = protocol.broadcast(r, params, stats)
        updates = []
        for k in sample_clients(members, cfg.participation, seed, r):
            task = protocol.client_task(int(k), r, params, shared, states[k])
            updates.append((len(protocol.x[k]), local_train(params, protocol.x[k], task, cfg,
                                                            seed, r, protocol.ids[k])))
        fedavg_step(params, updates, server)
        check_finite(params, r)
        if on_round is not None:
            on_round(r, params)
    return params


def one_hot(labels: np.ndarray, n: int) -> torch.Tensor:
    """``(len(labels), n)`` float one-hot rows."""
    return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), n).float()
