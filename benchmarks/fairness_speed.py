"""Seconds of In-UCDS stage 1 and of the long-tail optimisers, each against a named peer in
the same run.

1. **In-UCDS stage 1** on :func:`trustrec.data.synthetic.ml1m_shaped` (6,040 users, 302
   advantaged; timing only: the synthetic data has no preference structure). trustrec's
   batched solve (:func:`trustrec.fairness.ucds.dominant_sets`) against the *released
   code's shape*: one user at a time, building that user's ``(1 + n_adv)²`` matrix and
   running the dynamics on it, timed on ``--peer-users`` users and extrapolated to all
   disadvantaged users (same solver, same iterations: only the loop differs).
2. **EISAM's cost per epoch** on MovieLens-100K (leave-last-out, SASRec, default config,
   one torch thread): ``--epochs`` epochs of plain Adam, SAM and EISAM, each timed in
   the same run; the ratios to plain training are the figures to read.

Usage: ``python benchmarks/fairness_speed.py [--dataset ../shared/data/ml-100k]
[--epochs 3] [--peer-users 200] [--out fairness_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from trustrec.data.loaders import load_recbole
from trustrec.data.split import leave_last_out
from trustrec.data.synthetic import ml1m_shaped
from trustrec.evaluate.fairness import activity_groups
from trustrec.fairness.ucds import co_interactions, dominance_alpha, dominant_sets, replicator
from trustrec.fileio import atomic_write_bytes
from trustrec.models import make_model


def stage1(peer_users: int) -> dict[str, float]:
    """Batched stage 1 against the one-user-at-a-time loop (extrapolated)."""
    train = ml1m_shaped(seed=0)
    adv = activity_groups(train)
    t0 = time.perf_counter()
    pairs, record = dominant_sets(train, adv)
    ours = time.perf_counter() - t0
    a_idx, dis = np.flatnonzero(adv), np.flatnonzero(~adv)
    a_adv = co_interactions(train, a_idx, a_idx)
    np.fill_diagonal(a_adv, 0.0)
    rows = dis[:peer_users]
    a_u = co_interactions(train, rows, a_idx)
    scale = max(float(a_adv.max()), float(a_u.max()))
    a_adv, a_u = a_adv / scale, a_u / scale
    alpha = dominance_alpha(a_adv)
    iters = int(record["max_iterations"])
    t0 = time.perf_counter()
    for r in range(len(rows)):
        replicator(a_adv, a_u[r:r + 1], alpha, iters, 0.0)
    loop = (time.perf_counter() - t0) / len(rows) * len(dis)
    print(f"stage 1, {train.n_users} users ({int(adv.sum())} advantaged): batched "
          f"{ours:.2f} s, per-user loop {loop:.1f} s (extrapolated from {len(rows)}): "
          f"{loop / ours:.1f}x; {len(pairs)} pairs, {iters} iterations", flush=True)
    return {"batched_seconds": ours, "loop_seconds": loop, "speedup": loop / ours,
            "pairs": float(len(pairs)), **record}


def optimisers(dataset: str, epochs: int) -> dict[str, float]:
    """Seconds per epoch of plain Adam, SAM and EISAM on SASRec."""
    split = leave_last_out(load_recbole(dataset, "ml-100k"))
    out = {}
    for opt in ("adam", "sam", "eisam"):
        model = make_model("sasrec", epochs=epochs, eval_every=epochs + 1, optimizer=opt)
        model.fit(split.train, seed=0)
        out[opt] = model.fit_info_["train_seconds"] / epochs
    for opt in ("sam", "eisam"):
        out[f"{opt}_ratio"] = out[opt] / out["adam"]
    print(f"SASRec s/epoch: adam {out['adam']:.2f}, sam {out['sam']:.2f} "
          f"({out['sam_ratio']:.2f}x), eisam {out['eisam']:.2f} ({out['eisam_ratio']:.2f}x)",
          flush=True)
    return out


def main() -> None:
    """Run both parts, print and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="../shared/data/ml-100k")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--peer-users", type=int, default=200)
    ap.add_argument("--out", default="fairness_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"stage1": stage1(args.peer_users),
              "optimisers": optimisers(args.dataset, args.epochs), "torch_threads": 1}
    atomic_write_bytes(Path(args.out), json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
