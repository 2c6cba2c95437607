"""Evaluate: utility on a model directory's stored test rows, and A-IGF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustrec.fileio import now_iso


def evaluate_model_dir(model_dir: str | Path, ks: Sequence[int] = (10, 20),
                       fairness_metric: str = "ndcg@20", sampled: int | None = None
                       ) -> dict[str, Any]:
    """Utility on the stored test split and A-IGF, for the directory's current model.

    Every test user with remaining training rows is ranked (forgotten users have none and
    their test rows were dropped by forget); A-IGF uses activity groups of the remaining
    training data. A sequential model (one that scores from histories) reads each user's
    training + validation items as its history, and both are masked (the leave-last-out
    test).

    Args:
        model_dir: the model directory.
        ks: cut-offs.
        fairness_metric: the metric of A-IGF.
        sampled: also rank each test item among this many random unseen items (the
            papers' sampled protocol, random ties), reported apart as ``sampled``.

    Returns:
        JSON-ready: ``model_dir``, ``model``, ``method``, ``n_users`` evaluated, ``metrics``
        (mean of every ``{metric}@{k}``, full ranking), ``a_igf``, ``fairness_metric``, and
        with ``sampled`` the ``sampled`` means (``sampled_{hit,ndcg,mrr}@k``) and
        ``sampled_negatives``.
    """
    from trustrec.data.split import Split
    from trustrec.evaluate.fairness import a_igf
    from trustrec.evaluate.ranking import evaluate_ranking, summarize
    from trustrec.evaluate.sampled import evaluate_sampled
    from trustrec.workflows.model_dir import load_model_dir

    md = load_model_dir(model_dir)
    unl = md.unlearner
    train = unl.train_
    users = np.intersect1d(np.unique(md.test.users), np.flatnonzero(train.user_counts() > 0))
    models = list(unl.persistent_models().values())
    history = None
    scorer: Any = unl
    if len(models) == 1 and getattr(models[0], "scores_from_history", False):
        scorer = models[0]
        history = train if unl.valid_ is None else Split(train, unl.valid_, md.test).known()
    known = train if history is None else history
    per_user = evaluate_ranking(scorer, known, md.test, ks, users=users, history=history)
    metric = fairness_metric if fairness_metric in per_user.columns else \
        f"ndcg@{max(int(k) for k in ks)}"
    return {"model_dir": str(md.path), "model": md.meta.get("model"),
            "method": md.meta.get("method"), "dataset": md.meta.get("dataset", {}).get("name"),
            "n_users": int(len(per_user)), "test_rows": md.test.n_interactions,
            "metrics": summarize(per_user), "a_igf": a_igf(per_user, train, metric=metric),
            "fairness_metric": metric, "time": now_iso(),
            **({} if sampled is None else {
                "sampled_negatives": int(sampled),
                "sampled": summarize(evaluate_sampled(
                    scorer, known, md.test.restrict_users(users), ks, n_negatives=sampled,
                    history=history))})}
