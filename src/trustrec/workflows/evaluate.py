"""Evaluate: utility on a model directory's stored test rows, and A-IGF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustrec.fileio import now_iso


def evaluate_model_dir(model_dir: str | Path, ks: Sequence[int] = (10, 20),
                       fairness_metric: str = "ndcg@20") -> dict[str, Any]:
    """Utility on the stored test split and A-IGF, for the directory's current model.

    Every test user with remaining training rows is ranked (forgotten users have none and
    their test rows were dropped by forget); A-IGF uses activity groups of the remaining
    training data.

    Returns:
        JSON-ready: ``model_dir``, ``model``, ``method``, ``n_users`` evaluated, ``metrics``
        (mean of every ``{metric}@{k}``), ``a_igf`` and ``fairness_metric``.
    """
    from trustrec.evaluate.fairness import a_igf
    from trustrec.evaluate.ranking import evaluate_ranking, summarize
    from trustrec.workflows.model_dir import load_model_dir

    md = load_model_dir(model_dir)
    unl = md.unlearner
    train = unl.train_
    users = np.intersect1d(np.unique(md.test.users), np.flatnonzero(train.user_counts() > 0))
    per_user = evaluate_ranking(unl, train, md.test, ks, users=users)
    metric = fairness_metric if fairness_metric in per_user.columns else \
        f"ndcg@{max(int(k) for k in ks)}"
    return {"model_dir": str(md.path), "model": md.meta.get("model"),
            "method": md.meta.get("method"), "dataset": md.meta.get("dataset", {}).get("name"),
            "n_users": int(len(per_user)), "test_rows": md.test.n_interactions,
            "metrics": summarize(per_user), "a_igf": a_igf(per_user, train, metric=metric),
            "fairness_metric": metric, "time": now_iso()}
