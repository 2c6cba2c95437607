"""Seconds per federated round: the in-process simulator against named peers, same run.

1. **MovieLens-100K, every one of the 943 clients in the round** (participation 1), each
   method at its default size: the simulator (clients batched by size) against the same
   core run **one client at a time** (the released code's shape: a Python loop over
   clients, identical arithmetic), ``--rounds`` rounds each; the median round is reported.
2. **Flower** (``--flower``): the same federated recommender (FedMF by default, the
   lightest, so that Flower's per-message cost is what is measured) for ``--flower-rounds``
   rounds through :func:`trustrec.federated.flower.run_flower` with 943 supernodes, Ray's
   start-up excluded (the first round is dropped), against the simulator.
3. **Synthetic ML-1M shape** (6,040 clients; :func:`trustrec.data.synthetic.ml1m_shaped`,
   timing only): every method with all clients and with 10 %.

One torch thread throughout (``num_threads`` = 1, the methods' default). Usage::

    python benchmarks/federated_speed.py --dataset ../shared/data/ml-100k [--rounds 3]
        [--flower] [--flower-rounds 3] [--out benchmarks/federated_speed_result.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustrec.data.dataset import Dataset
from trustrec.data.loaders import load_recbole
from trustrec.data.split import random_split
from trustrec.data.synthetic import ml1m_shaped
from trustrec.federated.clients import ClientData
from trustrec.federated.keyed import stream_key
from trustrec.federated.methods import FEDERATED, make_federated
from trustrec.federated.server import (
    Collector,
    apply_round,
    initial_state,
    sample_clients,
    train_clients,
)
from trustrec.fileio import to_json_text, write_atomic


def seconds_per_round(name: str, train: Dataset, rounds: int, participation: float,
                      one_at_a_time: bool = False) -> float:
    """Median seconds of ``rounds`` rounds of ``name`` in the simulator."""
    method = make_federated(name, {"participation": participation})
    arch, opts, server = (method.architecture(), method.local_options(train.n_items),
                          method.server_options())
    data = ClientData.from_dataset(train)
    state = initial_state(arch, opts, server, data.n_clients, data.n_items, 0)
    key = stream_key(0, "federated", "negatives")
    batches = (lambda c: [np.array([x]) for x in c]) if one_at_a_time else None
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        clients = sample_clients(data.members(), participation, 0, state.round)
        collector = Collector(state.shared, tuple(arch.item_tables), server)
        train_clients(arch, opts, data, state, clients, key, state.round, server, collector,
                      batches)
        apply_round(state, collector.result())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flower_seconds(name: str, train: Dataset, rounds: int) -> dict[str, float]:
    """Seconds per round through Flower: total time of ``rounds`` and of 1 round, so the
    difference divided by ``rounds − 1`` excludes Ray's start-up and the handshake."""
    from trustrec.federated.flower import run_flower
    method = make_federated(name, {"participation": 1.0})
    out = {}
    for n in (1, rounds):
        t0 = time.perf_counter()
        run_flower(method, train, seed=0, rounds=n)
        out[n] = time.perf_counter() - t0
    return {"seconds_1_round": out[1], f"seconds_{rounds}_rounds": out[rounds],
            "seconds_per_round": (out[rounds] - out[1]) / (rounds - 1)}


def main() -> None:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flower", action="store_true")
    ap.add_argument("--flower-method", default="fedmf")
    ap.add_argument("--flower-rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/federated_speed_result.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ml100k = random_split(load_recbole(args.dataset, "ml-100k"), (0.8, 0.1, 0.1), seed=0).train
    result: dict[str, Any] = {"ml100k_all_clients": {}, "ml1m_shape": {}}
    for name in FEDERATED:
        batched = seconds_per_round(name, ml100k, args.rounds, 1.0)
        loop = seconds_per_round(name, ml100k, max(1, args.rounds - 2), 1.0, one_at_a_time=True)
        row = {"simulator_s": batched, "one_client_at_a_time_s": loop,
               "speed-up": loop / batched}
        result["ml100k_all_clients"][name] = row
        print(f"ML-100K, 943 clients, {name}: {batched:.3f} s/round batched, {loop:.3f} s "
              f"one at a time ({loop / batched:.1f}x)", flush=True)
    if args.flower:
        fl = flower_seconds(args.flower_method, ml100k, args.flower_rounds)
        sim = result["ml100k_all_clients"][args.flower_method]["simulator_s"]
        fl["simulator_s"] = sim
        fl["flower/simulator"] = fl["seconds_per_round"] / sim
        result["flower"] = {args.flower_method: fl}
        print(f"Flower, 943 supernodes, {args.flower_method}: {fl['seconds_per_round']:.2f} "
              f"s/round against the simulator's {sim:.3f} s ({fl['flower/simulator']:.0f}x)",
              flush=True)
    big = ml1m_shaped(0)
    for name in FEDERATED:
        row = {}
        for share in (1.0, 0.1):
            row[f"participation_{share:g}_s"] = seconds_per_round(name, big, args.rounds, share)
        result["ml1m_shape"][name] = row
        print(f"ML-1M shape, 6,040 clients, {name}: {json.dumps(row)}", flush=True)
    write_atomic(Path(args.out), to_json_text(result))


if __name__ == "__main__":
    main()
