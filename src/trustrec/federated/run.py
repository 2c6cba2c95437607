"""``trustrec fed run``: one federation from a spec file, resumable, with a report.

The spec (TOML/YAML) names the dataset, the method and its options, the split, the
runtime and the output directory::

    dataset = "ml-100k"
    method = "fedrecgel"
    seed = 0
    out = "runs/fed-fedrecgel"
    [config]            # the method's options (trustrec.federated.methods)
    rounds = 100

The output directory gets ``checkpoint/`` (rewritten after every round: a killed run
started again with the same spec resumes from its last round), ``model/`` (the chosen
round), ``curve.parquet`` (per round), ``result.json`` and ``report.md`` with the curve's
plot. With the simulator, a spec that differs from the one a directory's checkpoint was
started with is refused; the Flower runtime keeps no checkpoint (a run starts over and
replaces the outputs).
"""

from __future__ import annotations

import time
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from trustrec.config import NonNegativeInt, PositiveInt, one_of, to_dict, typed_config
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.federated.methods import FEDERATED, make_federated
from trustrec.fileio import to_json_text, write_atomic
from trustrec.seeding import rng


@typed_config
class FedRunSpec:
    """One federation (see the module docstring).

    Attributes:
        dataset: a known dataset name or a path.
        method: a registered federated method.
        config: the method's options.
        seed: root seed (split, initialisation, sampling, negatives).
        split: ``random`` (per user 80/10/10) or ``leave_last_out``.
        split_ratios: the random split's train/validation/test shares.
        k: the cut-off of NDCG@k (selection) and of the reported metrics.
        protocol: ``full`` (all items ranked) or ``sampled`` (1 + 99, labelled).
        clients: 0: every user is a client; N: a seeded subset of N users.
        runtime: ``simulator`` (in-process) or ``flower`` (Flower's simulation engine,
            the last round's model, no validation choice).
        out: output directory.
        data_dir: cache folder for known datasets.
    """

    dataset: str = "ml-100k"
    method: Annotated[str, one_of(FEDERATED.names, "federated method")] = "fedrecgel"
    config: dict[str, Any] = field(default_factory=dict)
    seed: NonNegativeInt = 0
    split: Literal["random", "leave_last_out"] = "random"
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    k: PositiveInt = 10
    protocol: Literal["full", "sampled"] = "full"
    clients: NonNegativeInt = 0
    runtime: Literal["simulator", "flower"] = "simulator"
    out: str = "runs/federated"
    data_dir: str | None = None


def load_run_spec(path: str | Path) -> FedRunSpec:
    """Read and check a run spec (unknown keys and bad values are ConfigErrors); the
    method's options are checked too."""
    from trustrec.bench.grid import read_spec_file
    from trustrec.config import build_config
    spec = build_config(FedRunSpec, read_spec_file(path), where=str(path))
    make_federated(spec.method, dict(spec.config))
    return spec


def choose_clients(train: Dataset, n: int, seed: int) -> np.ndarray | None:
    """``n`` users with training data drawn by ``(seed, "clients")`` (None: every user)."""
    if n == 0:
        return None
    users = np.unique(train.users)
    if n > len(users):
        raise ConfigError(f"clients = {n} but only {len(users)} users have training data")
    return np.sort(rng(seed, "federated", "clients").choice(users, size=n, replace=False))


def run_spec(spec: FedRunSpec, *, progress: bool = True) -> dict[str, Any]:
    """Run the federation of ``spec`` (resuming from ``out/checkpoint``) and write its
    outputs; returns the result record (also ``out/result.json``)."""
    from trustrec.data.loaders import load_dataset
    from trustrec.data.split import make_split
    from trustrec.federated.fit import fit_federation
    from trustrec.federated.report import write_run_report

    method = make_federated(spec.method, dict(spec.config))
    out = Path(spec.out)
    ds = load_dataset(spec.dataset, spec.data_dir, progress=progress)
    split = make_split(ds, spec.split, spec.split_ratios, spec.seed)
    clients = choose_clients(split.train, spec.clients, spec.seed)
    t0 = time.perf_counter()
    if spec.runtime == "flower":
        from trustrec.federated.flower import run_flower
        model = run_flower(method, split.train, seed=spec.seed, clients=clients)
        curve = None
        resumed = 0
    else:
        fit = fit_federation(method, split.train, split.valid, seed=spec.seed, test=split.test,
                             clients=clients, k=spec.k, protocol=spec.protocol,
                             checkpoint=out / "checkpoint", progress=progress)
        model, curve, resumed = fit.model, fit.curve, fit.resumed_from
    model.save(out / "model")
    metrics = score_test_split(model, split.train, split.test, spec.k, clients, spec.seed)
    record = {"spec": to_dict(spec), "method": method.name, "config": to_dict(method.config),
              "dataset": ds.name, "model": model.info, "test": metrics,
              "resumed_from_round": resumed, "wall_seconds": time.perf_counter() - t0}
    if curve is not None:
        from trustrec.bench.files import write_parquet
        write_parquet(out / "curve.parquet", curve)
    write_atomic(out / "result.json", to_json_text(record))
    write_run_report(out, record, curve)
    return record


def score_test_split(model: Any, train: Dataset, test: Dataset, k: int,
                     clients: np.ndarray | None, seed: int) -> dict[str, float]:
    """Full-sort NDCG/Recall/HR/MRR/Precision/F1@k of ``model`` on ``test`` and the labelled
    sampled (1 + 99) NDCG/HR@k, over the federation's users (``clients``, or every user
    with training data: a user without one has no trained private state)."""
    from trustrec.federated.fit import evaluate_federation
    users = clients if clients is not None else np.unique(train.users)
    return (evaluate_federation(model, train, test, k, "full", seed, users)
            | evaluate_federation(model, train, test, k, "sampled", seed, users))
