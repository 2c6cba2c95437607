"""Full-ranking evaluation speed: trustrec against peers measured in the same run.

Scores every MovieLens-100K user with a random 64-dim factor model, masks training items,
takes the top-k and computes the metrics at k in {10, 20}. Compared with

- a plain numpy evaluation (dense mask, full ``argsort``, dense relevance lookup), and
- implicit's ``ranking_metrics_at_k`` (its own recommend + metrics loop, one call per k)
  and its batch ``recommend`` (top-k only), when implicit is importable.

Every routine gets the same precomputed CSR matrices (trustrec caches them per Dataset).
Routines run round-robin (so load drift hits all alike) after a warm-up; times are
medians over ``--repeats`` rounds and ratios are peer / trustrec.
On a shared machine the absolute numbers are indicative only; the ratios are more stable.

Usage: ``python benchmarks/evaluation.py [--data PATH] [--repeats 30] [--dim 64] [--threads N]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trustrec.data.loaders import load_recbole
from trustrec.data.split import random_split
from trustrec.evaluate.ranking import dataset_csr, evaluate_ranking

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
KS = (10, 20)


def numpy_full_sort(u: np.ndarray, v: np.ndarray, train_csr, test_csr) -> dict[str, float]:
    """The textbook evaluation: dense scores, dense mask, full argsort, dense lookups."""
    users = np.flatnonzero(np.diff(test_csr.indptr) > 0)
    s = u[users] @ v.T
    s[train_csr[users].toarray() > 0] = -np.inf
    order = np.argsort(-s, axis=1)[:, :max(KS)]
    rel = test_csr[users].toarray() > 0
    hits = np.take_along_axis(rel, order, axis=1)
    n_rel = rel.sum(1)
    disc = 1.0 / np.log2(np.arange(max(KS)) + 2)
    out = {}
    for k in KS:
        h = hits[:, :k]
        idcg = np.array([disc[:min(n, k)].sum() for n in n_rel])
        first = np.where(h.any(1), h.argmax(1), k)
        out[f"ndcg@{k}"] = float((h @ disc[:k] / idcg).mean())
        out[f"recall@{k}"] = float((h.sum(1) / n_rel).mean())
        out[f"precision@{k}"] = float((h.sum(1) / k).mean())
        out[f"hit@{k}"] = float(h.any(1).mean())
        out[f"mrr@{k}"] = float(np.where(first < k, 1 / (first + 1), 0).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RecBole ml-100k folder")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for this run (default: torch's choice); "
                         "1 is steadier on a shared machine")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    ds = load_recbole(args.data, "ml-100k")
    split = random_split(ds, (0.8, 0.1, 0.1), seed=0)
    train, test = split.train, split.test
    g = np.random.default_rng(0)
    u = g.standard_normal((ds.n_users, args.dim)).astype(np.float32)
    v = g.standard_normal((ds.n_items, args.dim)).astype(np.float32)
    train_csr, test_csr = dataset_csr(train), dataset_csr(test)
    n_eval = int((np.diff(test_csr.indptr) > 0).sum())
    print(f"ML-100K: {n_eval} users evaluated × {ds.n_items} items, dim {args.dim}, "
          f"k in {KS}; torch threads {torch.get_num_threads()}; median of {args.repeats}")

    ut, vt = torch.from_numpy(u), torch.from_numpy(v)

    def torch_score(us: np.ndarray) -> np.ndarray:  # as EmbeddingRecommender.score does
        with torch.no_grad():
            return (ut[torch.from_numpy(us)] @ vt.T).numpy()

    def ours():
        return evaluate_ranking(torch_score, train, test, ks=KS)

    # name → (routine, check string); timed round-robin so load drift hits all alike.
    routines: dict[str, tuple[Callable[[], object], str]] = {}
    routines["trustrec evaluate_ranking (score+mask+top-k+5 metrics)"] = (
        ours, f"ndcg@10 {ours()['ndcg@10'].mean():.5f}")
    all_users = np.arange(ds.n_users)
    routines["  of which: score matmul alone (torch)"] = (lambda: torch_score(all_users), "")
    routines["trustrec evaluate_ranking, numpy score function"] = (
        lambda: evaluate_ranking(lambda us: u[us] @ v.T, train, test, ks=KS), "")
    routines["numpy full argsort evaluation"] = (
        lambda: numpy_full_sort(u, v, train_csr, test_csr),
        f"ndcg@10 {numpy_full_sort(u, v, train_csr, test_csr)['ndcg@10']:.5f}")
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.evaluation import ranking_metrics_at_k
    except ImportError:
        print("implicit not importable: its rows are skipped")
    else:
        peer = AlternatingLeastSquares(factors=args.dim, random_state=0)
        peer.user_factors, peer.item_factors = u, v
        train_f64 = train_csr.astype(np.float64)
        test_f64 = test_csr.astype(np.float64)
        users_eval = np.flatnonzero(np.diff(test_csr.indptr) > 0)
        for threads in (1, 0):
            def imp(threads=threads):
                return [ranking_metrics_at_k(peer, train_f64, test_f64, K=k,
                                             show_progress=False, num_threads=threads)
                        for k in KS]
            routines[f"implicit ranking_metrics_at_k, k=10 and 20 "
                     f"(num_threads={threads or 'all'})"] = (
                imp, f"ndcg@10 {imp()[0]['ndcg']:.5f}")
        routines["implicit recommend N=20, filter liked (top-k only)"] = (
            lambda: peer.recommend(users_eval, train_f64[users_eval], N=max(KS)), "")

    times: dict[str, list[float]] = {name: [] for name in routines}
    for fn, _ in routines.values():
        fn()  # warm-up (caches, lazy imports, thread pools)
    for _ in range(args.repeats):
        for name, (fn, _) in routines.items():
            time.sleep(0.02)  # let the previous routine's spinning worker threads go idle
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: 1000 * float(np.median(t)) for name, t in times.items()}
    t_ours = med["trustrec evaluate_ranking (score+mask+top-k+5 metrics)"]
    rows = [(name, med[name], note) for name, (_, note) in routines.items()]

    width = max(len(r[0]) for r in rows)
    print(f"{'routine':<{width}}  {'ms':>8}  {'÷ trustrec':>10}  check")
    for name, ms, note in rows:
        print(f"{name:<{width}}  {ms:8.2f}  {ms / t_ours:10.2f}  {note}")


if __name__ == "__main__":
    main()
