"""How fast each unlearning method forgets, against retraining, at MovieLens-1M scale.

For every dataset (``--data``: the ML-1M-shaped synthetic data, the real MovieLens-100K,
and the real ML-1M when it is in the cache), model (``--models``, default bpr and wmf) and
registered unlearning method (``--methods``, default every one in
``trustrec.unlearn.UNLEARNERS``): split per user 80/10/10 (seeded), ``fit`` the method on
the training part (early stopping on validation), then time ``forget`` of 5 % of the users
drawn at random (the same users for every method). A forget under 2 s is repeated on fresh
copies of the fitted method until 3 runs are timed (the bench's
:func:`trustrec.bench.experiments.unlearning.timed_forget`); the median is reported with
the min and max.
The named peer is ``retrain``, fitted once per (dataset, model) and measured in the same
run: each method's ratio is retrain's median forget seconds over its own.

The synthetic data (:func:`trustrec.data.synthetic.ml1m_shaped`) has ML-1M's size and
skew but no preference structure: it is for timing only, and this script prints no
quality figure. A method that raises is reported and skipped.

Early stopping: the synthetic data has no structure to learn, so validation stops
improving early and retraining runs fewer epochs than on real data (BPR: about 35 epochs
on the synthetic data, 105-140 on ML-100K; the retrain line prints the count). That makes
retraining cheap and every ratio conservative; ``--fixed-epochs N`` trains every model for
exactly N epochs instead, to time retraining at a realistic length.

Every model trains single-threaded (numba loops); timings on a shared machine are noisy,
so read the ratios, which compare runs made one after the other in the same process.

Usage::

    python benchmarks/unlearning_speed.py [--data ml1m-shaped,ml-100k] [--methods scif,sisa]
        [--models bpr,wmf] [--seed 0] [--ratio 0.05] [--epochs N | --fixed-epochs N]
        [--out results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from trustrec.bench.env import host_info, versions
from trustrec.data.dataset import Dataset
from trustrec.data.request import ForgetRequest
from trustrec.data.selection import select_forget_users
from trustrec.data.split import random_split
from trustrec.data.synthetic import ml1m_shaped
from trustrec.unlearn.base import UNLEARNERS, make_unlearner

PEER = "retrain"


def datasets(names: list[str], seed: int) -> list[tuple[Dataset, float]]:
    """Each named dataset with its load seconds: ``ml1m-shaped`` (synthetic, timing only),
    ``ml-1m`` (only when cached), or any name or path :func:`load_dataset` accepts."""
    from trustrec.data.loaders import load_dataset
    from trustrec.errors import TrustrecError

    out = []
    for name in names:
        t0 = time.perf_counter()
        if name == "ml1m-shaped":
            ds = ml1m_shaped(seed)
        elif name == "ml-1m":
            from trustrec.data.fetch import cached
            from trustrec.data.loaders import load_movielens_1m

            try:
                ds = load_movielens_1m(cached("ml-1m"))
            except TrustrecError:
                print("ml-1m: not in the cache, skipped", flush=True)
                continue
        else:
            ds = load_dataset(name)
        out.append((ds, time.perf_counter() - t0))
    return out


def time_method(method: str, model: str, model_cfg: dict[str, Any], train: Dataset,
                valid: Dataset, forget: np.ndarray, seed: int) -> dict[str, Any]:
    """Fit one method, forget the users, and return the seconds (or the error)."""
    from trustrec.bench.experiments.unlearning import timed_forget

    row: dict[str, Any] = {"method": method, "model": model}
    try:
        fitted = make_unlearner(method, model, model_cfg)
        t0 = time.perf_counter()
        fitted.fit(train, valid, seed=seed)
        row["learn_seconds"] = time.perf_counter() - t0
        unl, report, seconds = timed_forget(lambda: copy.deepcopy(fitted),
                                            ForgetRequest(users=forget))
        row["forget_seconds"] = float(np.median(seconds))
        row["forget_seconds_min"], row["forget_seconds_max"] = min(seconds), max(seconds)
        row["forget_runs"] = len(seconds)
        row["rows_removed"] = int(report.rows_removed)
        row["retrained"] = len(report.retrained)
        if method == PEER:  # how long retraining ran (early stopping decides)
            model = unl.persistent_models().get("model")
            info = getattr(model, "fit_info_", {}) or {}
            if "epochs_run" in info:
                row["retrain_epochs"] = int(info["epochs_run"])
    except Exception as exc:  # report and go on with the other methods
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def run(methods: list[str], models: list[str], seed: int, ratio: float,
        epochs: int | None, fixed_epochs: int | None, data: list[str]) -> dict[str, Any]:
    """Time every (dataset, model, method); print one line each as it finishes."""
    import trustrec.unlearn  # noqa: F401  (registers every method)

    order = [PEER] + [m for m in methods if m != PEER]
    result: dict[str, Any] = {"seed": seed, "ratio": ratio, "epochs": epochs,
                              "fixed_epochs": fixed_epochs,
                              "host": host_info(), "versions": versions(), "datasets": [],
                              "rows": []}
    for ds, gen_s in datasets(data, seed):
        split = random_split(ds, (0.8, 0.1, 0.1), seed=seed)
        forget = select_forget_users(split.train, "random", ratio, seed)
        rows = int(np.isin(split.train.users, forget).sum())
        result["datasets"].append({"name": ds.name, "users": ds.n_users, "items": ds.n_items,
                                   "interactions": ds.n_interactions,
                                   "load_seconds": gen_s, "forget_users": len(forget),
                                   "forget_rows": rows})
        print(f"{ds.name}: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} "
              f"interactions (made in {gen_s:.1f} s); forgetting {len(forget)} random users "
              f"({ratio:g}) with {rows} training rows", flush=True)
        for model in models:
            cfg = {} if epochs is None else {"epochs": epochs}
            if fixed_epochs is not None:  # no early stopping: exactly this many epochs
                cfg = {"epochs": fixed_epochs, "patience": fixed_epochs}
            peer_s = None
            for method in order:
                row = time_method(method, model, cfg, split.train, split.valid, forget, seed)
                row["dataset"] = ds.name
                if method == PEER and "forget_seconds" in row:
                    peer_s = row["forget_seconds"]
                if "forget_seconds" in row and peer_s is not None:
                    row["ratio_vs_retrain"] = peer_s / row["forget_seconds"]
                result["rows"].append(row)
                print(line(row), flush=True)
    return result


def line(row: dict[str, Any]) -> str:
    """One printed line per (dataset, model, method)."""
    head = f"  {row['dataset']} {row['model']:>8} {row['method']:>10}"
    if "error" in row:
        return f"{head}: FAILED ({row['error']})"
    ratio = row.get("ratio_vs_retrain")
    vs = f"{ratio:8.3g}x retrain" if ratio is not None else "   (no retrain peer)"
    epochs = f", {row['retrain_epochs']} epochs" if "retrain_epochs" in row else ""
    spread = (f" [{row['forget_seconds_min']:.3f}-{row['forget_seconds_max']:.3f}, "
              f"{row['forget_runs']} runs]")
    return (f"{head}: forget {row['forget_seconds']:8.3f} s{spread}  {vs}   "
            f"(fit {row['learn_seconds']:.1f} s, {row['retrained']} part(s) retrained"
            f"{epochs})")


def main() -> None:
    """Parse the options, run, and write the JSON file if asked."""
    import trustrec.unlearn  # noqa: F401  (registers every method)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(UNLEARNERS.names()),
                   help="comma-separated methods (default: every registered one)")
    p.add_argument("--models", default="bpr,wmf", help="comma-separated models")
    p.add_argument("--seed", type=int, default=0, help="root seed (data, split, forget set)")
    p.add_argument("--ratio", type=float, default=0.05, help="share of users to forget")
    p.add_argument("--epochs", type=int, default=None,
                   help="cap the models' epochs (default: their defaults, with early "
                        "stopping); a lower cap shortens retraining, so ratios shrink")
    p.add_argument("--fixed-epochs", type=int, default=None,
                   help="train exactly N epochs (no early stopping), e.g. as many as the "
                        "model needs on real data: on the synthetic data nothing can be "
                        "learned, so early stopping ends retraining sooner than on ML-1M "
                        "and understates its cost")
    p.add_argument("--data", default="ml1m-shaped,ml-100k,ml-1m",
                   help="comma-separated datasets: ml1m-shaped (synthetic, timing only), "
                        "ml-1m (when cached), or any dataset name or path")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    a = p.parse_args()
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        UNLEARNERS.get(m)  # unknown names fail now, with a suggestion
    result = run(methods, [m.strip() for m in a.models.split(",") if m.strip()], a.seed,
                 a.ratio, a.epochs, a.fixed_epochs,
                 [d.strip() for d in a.data.split(",") if d.strip()])
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
