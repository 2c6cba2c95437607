"""How strong an attack was: the target's exposure, the shift of predictions and accuracy.

* **Audience** (:func:`audience`): the users whose recommendations the attacker wants to
  change and whose own data it did not touch: every user without the target in its clean
  known items (train + validation) and not polluted. A polluted user has the target in
  its history, where a ranking masks it, so it cannot be part of the audience.
* **Target exposure** (:func:`target_exposure`): over the audience, scored from their
  clean known items, the target's ``target_hit@k`` / ``target_ndcg@k`` among every item
  the user has not seen (full catalogue), and ``sampled_target_hit@k`` /
  ``sampled_target_ndcg@k`` among 100 uniformly drawn unseen items (the CREAT paper's
  protocol); ties at random in both (:func:`trustrec.evaluate.sampled.ranks_of`).
  ``target_rank`` is the mean full-catalogue rank (0 = top).
* **Prediction shift** (:func:`shift`): the mean change of the target's score and of its
  rank over the audience, attacked minus clean victim (RecAD's prediction shift; score
  scales of two trainings differ, the rank shift does not depend on them).
* **Clean accuracy shift**: NDCG@10 of the attacked minus the clean victim on the test
  items of the users that were not polluted (full ranking, seen items masked).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.evaluate.ranking import dataset_csr, evaluate_ranking, score_block, summarize
from trustrec.evaluate.sampled import PAPER_NEGATIVES, metrics_from_ranks, ranks_of
from trustrec.models.base import Recommender
from trustrec.seeding import rng


def audience(known: Dataset, target: int, polluted: np.ndarray) -> np.ndarray:
    """Users without ``target`` in ``known`` (clean train + validation) and not polluted,
    with at least one known item."""
    ok = known.user_counts() > 0
    ok[known.users[known.items == target]] = False
    ok[np.asarray(polluted, dtype=np.int64)] = False
    return np.flatnonzero(ok)


def target_scores(model: Recommender, known: Dataset, users: np.ndarray, target: int,
                  ks: Sequence[int] = (10,), n_negatives: int = PAPER_NEGATIVES,
                  seed: int = 0, chunk_size: int = 1024) -> dict[str, np.ndarray]:
    """Per user of ``users``: the target's score, full-catalogue and sampled ranks and
    the metrics of both (see the module docstring)."""
    gen = rng(seed, "target-ranks", target)
    csr = dataset_csr(known)
    queries = Query.from_dataset(known, users)
    score, full, sampled = [], [], []
    for b in range(0, len(users), chunk_size):
        rows = users[b:b + chunk_size]
        s = score_block(model.score, rows, known.n_items,
                        queries.subset(np.arange(b, b + len(rows))))
        positive = np.full(len(rows), target)
        score.append(s[:, target])
        seen = csr[rows]
        full.append(ranks_of(s, positive, seen, gen))
        sampled.append(ranks_of(s, positive, seen, gen, n_negatives))
    full_r, sampled_r = np.concatenate(full), np.concatenate(sampled)
    out = {"target_score": np.concatenate(score).astype(np.float64),
           "target_rank": full_r.astype(np.float64)}
    out.update({k: v for k, v in metrics_from_ranks(full_r, ks, "target_").items()
                if "mrr" not in k})
    out.update({k: v for k, v in metrics_from_ranks(sampled_r, ks, "sampled_target_").items()
                if "mrr" not in k})
    return out


def target_exposure(model: Recommender, known: Dataset, users: np.ndarray, target: int,
                    ks: Sequence[int] = (10,), seed: int = 0) -> dict[str, float]:
    """Means over ``users`` of :func:`target_scores` (the target's exposure)."""
    return {k: float(v.mean()) for k, v in target_scores(model, known, users, target, ks,
                                                         seed=seed).items()}


def shift(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Prediction shift: the attacked minus the clean victim's mean target score, and the
    clean minus the attacked mean rank (positive = the target moved up)."""
    return {"prediction_shift": after["target_score"] - before["target_score"],
            "rank_shift": before["target_rank"] - after["target_rank"]}


def clean_ndcg(model: Recommender, known: Dataset, test: Dataset, users: np.ndarray,
               k: int = 10) -> float:
    """NDCG@k of ``users`` on ``test`` (full ranking, ``known`` masked and read as the
    histories)."""
    table = evaluate_ranking(model, known, test, ks=(k,), users=users, history=known)
    return summarize(table)[f"ndcg@{k}"]
