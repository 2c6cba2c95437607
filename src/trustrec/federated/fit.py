"""Run a federation in-process: rounds, validation, the chosen round, checkpoints.

Every ``eval_every`` rounds the current federation is scored on the validation split (and
on the test split when given, for the curves only); the round with the best validation
metric is kept (the papers' code picks it on test). With a checkpoint directory the whole
state is written atomically after every round, so a killed run resumes from its last
round and ends with the same model as an uninterrupted one (every random draw is keyed by
seed and round, never by a generator's position).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from tqdm.auto import tqdm

from trustrec.config import to_dict
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.ranking import evaluate_ranking, summarize
from trustrec.evaluate.sampled import evaluate_sampled
from trustrec.federated.aggregate import ServerOptimizer
from trustrec.federated.clients import ClientData
from trustrec.federated.methods import FedMethod
from trustrec.federated.model import FederatedRecommender, split_prefixed
from trustrec.federated.server import FederationState, initial_state, run_round
from trustrec.fileio import write_atomic
from trustrec.threads import torch_threads

CHECKPOINT = "checkpoint.safetensors"
PROTOCOLS = ("full", "sampled")
SAMPLED_NEGATIVES = 99


@dataclass
class FitResult:
    """What :func:`fit_federation` returns.

    Attributes:
        model: the federation at the chosen (best validation) round.
        curve: one row per round: ``round``, ``clients``, ``loss``, ``seconds``
            (cumulative training time), and on evaluated rounds ``valid_{metric}`` (and
            ``test_{metric}`` when a test split was given).
        best_round: the chosen round.
        resumed_from: the round a checkpoint resumed from (0: a fresh run).
    """

    model: FederatedRecommender
    curve: pd.DataFrame
    best_round: int
    resumed_from: int


def metric_name(k: int, protocol: str) -> str:
    """The selection metric's column: ``ndcg@k`` (full sort) or ``sampled_ndcg@k``."""
    return f"ndcg@{k}" if protocol == "full" else f"sampled_ndcg@{k}"


def evaluate_federation(model: FederatedRecommender, train: Dataset, truth: Dataset, k: int,
                        protocol: str, seed: int, users: np.ndarray | None = None
                        ) -> dict[str, float]:
    """Mean metrics@k of ``model`` on ``truth`` over ``users`` (default: every user with a
    held-out item): ``full`` ranks every item but the user's training items (NDCG, Recall,
    HR, MRR, Precision, F1); ``sampled`` ranks each held-out item against 99 sampled
    items (the papers' protocol; ``sampled_ndcg`` and ``sampled_hit``)."""
    if protocol == "full":
        table = evaluate_ranking(model, train, truth, ks=(k,), users=users)
        return {m: float(v) for m, v in summarize(table).items()}
    if users is not None:
        truth = truth.restrict_users(users)
    table = evaluate_sampled(model, train, truth, ks=(k,), n_negatives=SAMPLED_NEGATIVES,
                             seed=seed)
    return {m: float(table[m].mean()) if len(table) else float("nan")
            for m in (f"sampled_ndcg@{k}", f"sampled_hit@{k}")}


def _fingerprint(method: FedMethod, train: Dataset, members: np.ndarray, seed: int, k: int,
                 protocol: str) -> str:
    h = hashlib.sha256()
    # Thread count and batch size change float rounding only: a run may resume under others.
    config = {k: v for k, v in to_dict(method.config).items()
              if k not in ("num_threads", "max_rows")}
    h.update(json.dumps({"method": method.name, "config": config,
                         "seed": seed, "k": k, "protocol": protocol,
                         "shape": [train.n_users, train.n_items]},
                        sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(train.pair_keys()).tobytes())
    h.update(np.ascontiguousarray(members).tobytes())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, state: FederationState, best: dict[str, torch.Tensor],
                     meta: dict[str, Any]) -> None:
    """One file, written atomically: the tensors, with the JSON record in its metadata."""
    tensors = {f"shared.{n}": t for n, t in state.shared.items()}
    tensors |= {f"private.{n}": t for n, t in state.private.items()}
    tensors |= {f"server.{n}": t for n, t in state.server.state.items()}
    tensors |= {f"best.{n}": t for n, t in best.items()}
    path.mkdir(parents=True, exist_ok=True)
    blob = save_tensors({n: t.contiguous() for n, t in tensors.items()},
                        metadata={"checkpoint": json.dumps(meta, default=float)})
    write_atomic(path / CHECKPOINT, blob)


def _load_checkpoint(path: Path, fingerprint: str, server: ServerOptimizer
                     ) -> tuple[FederationState, dict[str, torch.Tensor], dict[str, Any]] | None:
    file = path / CHECKPOINT
    if not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = json.loads(f.metadata()["checkpoint"])
        tensors = load_tensors(file.read_bytes())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{file}: not a readable federation checkpoint ({exc}); "
                              "delete it to start over") from exc
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{path} holds a checkpoint of another federation (method, config, seed or "
            "data differ); use a new output directory or delete it to start over")
    server.state = split_prefixed(tensors, "server.")
    state = FederationState(shared=split_prefixed(tensors, "shared."),
                            private=split_prefixed(tensors, "private."), server=server,
                            round=int(meta["round"]))
    return state, split_prefixed(tensors, "best."), meta


def fit_federation(method: FedMethod, train: Dataset, valid: Dataset, *, seed: int = 0,
                   test: Dataset | None = None, clients: np.ndarray | None = None,
                   k: int = 10, protocol: str = "full", checkpoint: str | Path | None = None,
                   progress: bool = False,
                   on_round: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train ``method`` federated, one client per user, and keep the best validation round.

    Args:
        method: the federated method (:func:`~trustrec.federated.methods.make_federated`).
        train: training interactions (each user's are its client's data).
        valid: validation interactions: the round is chosen on them.
        seed: root seed of every draw (initialisation, sampling, negatives).
        test: test interactions, scored on evaluated rounds for the curves only.
        clients: the users that take part (default: every user with training data).
        k: the cut-off of the selection metric (NDCG@k).
        protocol: ``full`` (rank all items) or ``sampled`` (1 + 99, labelled).
        checkpoint: directory for the per-round checkpoint (resumes when it holds one of
            the same federation).
        progress: show a progress bar per round.
        on_round: called with each round's row of the curve.

    Raises:
        ConfigError: an unknown protocol, an empty client, a checkpoint of another run, or
            a federation that diverged (non-finite parameters).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    cfg = method.config
    arch = method.architecture()
    opts = method.local_options(train.n_items)
    server = method.server_options()
    data = ClientData.from_dataset(train, clients)
    members = data.members()
    eval_users = np.intersect1d(members, np.unique(valid.users))
    test_users = np.intersect1d(members, np.unique(test.users)) if test is not None else None
    fp = _fingerprint(method, train, members, seed, k, protocol)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    loaded = _load_checkpoint(ckpt, fp, ServerOptimizer(server.optimizer, server.lr)) \
        if ckpt is not None else None
    if loaded is None:
        state = initial_state(arch, opts, server, data.n_clients, data.n_items, seed)
        best: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"fingerprint": fp, "round": 0, "curve": [], "best_round": 0,
                                "best_value": -np.inf, "stale": 0, "seconds": 0.0}
    else:
        state, best, meta = loaded
    resumed_from = state.round
    metric = metric_name(k, protocol)
    config = to_dict(cfg)

    def snapshot() -> FederatedRecommender:
        return FederatedRecommender(method.name, config, state.shared, state.private)

    bar = tqdm(total=cfg.rounds, initial=state.round, desc=f"{method.name} rounds",
               disable=not progress, leave=False)
    with torch_threads(cfg.num_threads):
        while state.round < cfg.rounds and not (cfg.patience and meta["stale"] >= cfg.patience):
            t0 = time.perf_counter()
            row = run_round(arch, opts, data, state, members, server, seed)
            meta["seconds"] += time.perf_counter() - t0
            if not all(bool(torch.isfinite(t).all()) for t in state.shared.values()):
                raise ConfigError(
                    f"{method.name} diverged in round {state.round} (non-finite shared "
                    f"parameters; last loss {row['loss']:.3g}): lower its learning rates")
            row["seconds"] = meta["seconds"]
            if state.round % cfg.eval_every == 0 or state.round == cfg.rounds:
                current = snapshot()
                value = evaluate_federation(current, train, valid, k, protocol, seed,
                                            eval_users)[metric]
                row[f"valid_{metric}"] = value
                if test is not None:
                    row[f"test_{metric}"] = evaluate_federation(current, train, test, k,
                                                                protocol, seed,
                                                                test_users)[metric]
                if value > meta["best_value"]:
                    meta.update(best_value=value, best_round=state.round, stale=0)
                    best = {f"shared.{n}": t.clone() for n, t in state.shared.items()}
                    best |= {f"private.{n}": state.private[n].clone()
                             for n in arch.private_shapes}
                else:
                    meta["stale"] += 1
                bar.set_postfix(loss=f"{row['loss']:.3f}", valid=f"{value:.4f}")
            meta["curve"].append(row)
            meta["round"] = state.round
            if ckpt is not None:
                _save_checkpoint(ckpt, state, best, meta)
            if on_round is not None:
                on_round(row)
            bar.update(1)
    bar.close()
    if best:
        model = FederatedRecommender(method.name, config, split_prefixed(best, "shared."),
                                     split_prefixed(best, "private."))
    else:
        model = snapshot()
    model.info = {"best_round": meta["best_round"], "rounds_run": state.round,
                  "seconds": meta["seconds"], f"valid_{metric}": meta["best_value"],
                  "seed": seed, "protocol": protocol}
    return FitResult(model=model, curve=pd.DataFrame(meta["curve"]),
                     best_round=int(meta["best_round"]), resumed_from=resumed_from)
