"""SISA: Sharded, Isolated, Sliced and Aggregated training (Bourtoule et al., 2021).

Users are split into K disjoint shards; one model per shard learns from its shard's rows
only. Forgetting retrains, from scratch, only the shards that held a removed row, so a
request costs about 1/K of a full retrain per affected shard and the result is exact: every
shard model equals a fresh fit of that shard on its remaining rows.

This implementation shards *users* (a user's rows all live in one shard, as in
recommendation variants of SISA such as RecEraser's user partitions) and does not slice:
each shard is retrained from scratch, never from a slice checkpoint. The shard machinery
lives in :class:`~trustrec.unlearn.ensemble.ShardEnsemble`.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from trustrec.config import PositiveInt, one_of, typed_config
from trustrec.unlearn.base import UNLEARNERS
from trustrec.unlearn.ensemble import AGGREGATIONS, ShardEnsemble
from trustrec.unlearn.partition import balanced_partition

__all__ = ["AGGREGATIONS", "SISA", "SISAConfig", "balanced_partition"]


@typed_config
class SISAConfig:
    """Options of SISA.

    Attributes:
        n_shards: number of user shards K (one model each).
        aggregation: how scores are formed from the shard models; ``"owner"``: the model
            of the user's shard scores the user; ``"average"``: the mean of all shard
            models' scores. Names come from :data:`AGGREGATIONS`.
        workers: shards (re)trained at once, in threads (see
            :class:`~trustrec.unlearn.ensemble.ShardEnsemble`).
    """

    n_shards: PositiveInt = 10
    aggregation: Annotated[str, one_of(AGGREGATIONS.names, "aggregation")] = "owner"
    workers: PositiveInt = 1


@UNLEARNERS.register("sisa")
class SISA(ShardEnsemble):
    """Exact unlearning with K random user shards, one model per shard.

    Choices (where the paper is silent or the setting differs):

    * Partition: all ``n_users`` user indices (not only users with rows) are dealt to shards
      by :func:`balanced_partition` with ``rng(seed, "sisa", "partition")``, so shard sizes
      in users differ by at most one and every user, even one with no rows or a forgotten
      one, keeps an owner. The partition never changes after ``fit``.
    * Shard training, forgetting and persistence: see
      :class:`~trustrec.unlearn.ensemble.ShardEnsemble` (seed ``child_seed(seed, "shard",
      s)``, only the shards that lose a training or validation row are retrained).
    * Aggregation: ``"owner"`` (default; each user is scored by its shard's model, which
      saw all of the user's rows) or ``"average"`` (mean of the K models' scores, as in
      UltraRE's released SISA code). Neither needs training.
    * No slicing: the paper's slice checkpoints trade storage for retraining time and can
      be added as a separate method.

    Attributes:
        assignment_: int64 shard per user index.
        models_: one model per shard.
    """

    name = "sisa"
    Config = SISAConfig

    def _partition(self, progress: bool) -> dict[str, Any]:
        a = balanced_partition(self.train_.n_users, self.n_shards, self.seed_)
        a.setflags(write=False)
        self.assignment_ = a
        return {}

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` by the configured aggregation."""
        self._check_fitted()
        return AGGREGATIONS.get(self.config.aggregation)(self, self._check_users(users))
