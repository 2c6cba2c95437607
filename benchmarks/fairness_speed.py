"""Seconds of In-UCDS stage 1 and of the long-tail optimisers, each against a named peer in
the same run.

1. **In-UCDS stage 1** on :func:`trustrec.data.synthetic.ml1m_shaped` (6,040 users, 302
   advantaged; timing only: the synthetic data has no preference structure). trustrec's
   batched solve (:func:`trustrec.fairness.ucds.dominant_sets`) against the *released
   code's shape*: one user at a time, building that user's ``(1 + n_adv)²`` matrix and
   running the dynamics on it, timed on ``--peer-users`` users and extrapolated to all
   disadvantaged users (same solver, same iterations: only the loop differs).
2. **EISAM's cost per epoch** on MovieLens-100K (leave-last-out, SASRec, default config,
   one torch thread): ``--epochs`` epochs of plain Adam, SAM, EISAM and EISAM with
   Focal-SAM's own ascent pass (``eisam_ascent = "current"``), each timed in the same
   run; then BPR-MF's numba SGD plain, SAM and EISAM (per training row); the ratios to
   plain training are the figures to read.
3. **UGF re-ranking** (BPR-MF's top-100 lists of every test user, F1@10 gap bound
   ``ε`` below the base gap): the reduced 0-1 program against the full one (every
   candidate of every user, the paper's program), both by HiGHS in the same run; the
   optimum is the same, the seconds are the figures to read.

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
from trustrec.evaluate.ranking import recommend_lists
from trustrec.fairness.rerank import ugf_rerank
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


def per_epoch(model: str, split, epochs: int, runs: dict[str, dict]) -> dict[str, float]:
    """Seconds per epoch of each named config of ``model`` and its ratio to the first."""
    out = {}
    for name, options in runs.items():
        m = make_model(model, epochs=epochs, eval_every=epochs + 1, **options)
        m.fit(split.train, seed=0)
        out[name] = m.fit_info_["train_seconds"] / epochs
    first = next(iter(runs))
    for name in list(runs)[1:]:
        out[f"{name}_ratio"] = out[name] / out[first]
    print(f"{model} s/epoch: " + ", ".join(
        f"{n} {out[n]:.3f}" + (f" ({out[n + '_ratio']:.2f}x)" if n != first else "")
        for n in runs), flush=True)
    return out


def optimisers(dataset: str, epochs: int) -> dict[str, dict[str, float]]:
    """Seconds per epoch of plain training, SAM and EISAM on SASRec and BPR-MF."""
    split = leave_last_out(load_recbole(dataset, "ml-100k"))
    sasrec = per_epoch("sasrec", split, epochs, {
        "adam": {}, "sam": {"optimizer": "sam"}, "eisam": {"optimizer": "eisam"},
        "eisam_current": {"optimizer": "eisam", "eisam_ascent": "current"}})
    make_model("bpr", epochs=1, optimizer="eisam").fit(split.train, seed=0)  # compile
    bpr = per_epoch("bpr", split, 10 * epochs, {
        "sgd": {}, "sam": {"optimizer": "sam"}, "eisam": {"optimizer": "eisam"}})
    return {"sasrec": sasrec, "bpr": bpr}


def rerank(dataset: str) -> dict[str, float]:
    """The reduced UGF program against the full one, on BPR-MF's lists."""
    split = leave_last_out(load_recbole(dataset, "ml-100k"))
    model = make_model("bpr").fit(split.train, split.valid, seed=0)
    known = split.known()
    truth = split.test.to_csr()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    lists, scores = recommend_lists(model, known, users, 100, with_scores=True)
    relevant = np.asarray(truth[users[:, None], lists].todense(), dtype=bool)
    args = (scores, lists, relevant, np.diff(truth.indptr)[users],
            activity_groups(split.train)[users], 10)
    base = ugf_rerank(*args, epsilon=1.0).record["gap_before"]
    eps = abs(base) / 2
    out = {"gap_before": base, "epsilon": eps}
    for name, reduce in (("reduced", True), ("full", False)):
        t0 = time.perf_counter()
        res = ugf_rerank(*args, epsilon=eps, time_limit=300.0, reduce=reduce)
        out[f"{name}_seconds"] = time.perf_counter() - t0
        out[f"{name}_variables"] = res.record["variables"]
        out[f"{name}_score_lost"] = res.record["score_lost_per_user"]
        out[f"{name}_status"] = res.record["status"]
    out["speedup"] = out["full_seconds"] / out["reduced_seconds"]
    print(f"UGF re-ranking, {len(users)} users x 100 candidates, eps {eps:.4f}: reduced "
          f"{out['reduced_seconds']:.2f} s ({out['reduced_variables']} binaries), full "
          f"{out['full_seconds']:.2f} s ({out['full_variables']}): {out['speedup']:.0f}x; "
          f"score lost per user {out['reduced_score_lost']:.5f} / "
          f"{out['full_score_lost']:.5f}", flush=True)
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
              "optimisers": optimisers(args.dataset, args.epochs),
              "rerank": rerank(args.dataset), "torch_threads": 1}
    atomic_write_bytes(Path(args.out), json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
