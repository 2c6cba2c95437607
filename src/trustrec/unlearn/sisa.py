"""SISA: Sharded, Isolated, Sliced and Aggregated training (Bourtoule et al., 2021).

Users are split into K disjoint shards; one model per shard learns from its shard's rows
only. Forgetting retrains, from scratch, only the shards that held a removed row, so a
request costs about 1/K of a full retrain per affected shard and the result is exact: every
shard model equals a fresh fit of that shard on its remaining rows.

This implementation shards *users* (a user's rows all live in one shard, as in
recommendation variants of SISA such as RecEraser's user partitions) and does not slice:
each shard is retrained from scratch, never from a slice checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustrec.config import suggest
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models.base import EmbeddingRecommender
from trustrec.registry import Registry
from trustrec.seeding import child_seed, rng
from trustrec.unlearn.base import UNLEARNERS, UnlearnerBase

#: How shard models' scores become one score per (user, item): ``f(sisa, users) -> scores``.
Aggregation = Callable[["SISA", np.ndarray], np.ndarray]
AGGREGATIONS: Registry[Aggregation] = Registry("SISA aggregation")


def balanced_partition(n: int, n_shards: int, seed: int) -> np.ndarray:
    """Assign ``n`` indices to ``n_shards`` shards at random, sizes differing by at most 1.

    A permutation from ``rng(seed, "sisa", "partition")`` is dealt round-robin: the index
    at position p of the permutation goes to shard ``p % n_shards``.

    Returns:
        int64 shard per index, length ``n``.
    """
    perm = rng(seed, "sisa", "partition").permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[perm] = np.arange(n, dtype=np.int64) % n_shards
    return out


@AGGREGATIONS.register("owner")
def owner_scores(sisa: SISA, users: np.ndarray) -> np.ndarray:
    """Each user is scored by the model of the shard that owns the user.

    Vectorised per shard: the users are grouped by owner and each shard model scores its
    group in one call.
    """
    shard = sisa.assignment_[users]
    out = np.empty((len(users), sisa.train_.n_items), dtype=np.float32)
    for s in np.unique(shard):
        rows = np.flatnonzero(shard == s)
        out[rows] = sisa.models_[s].score(users[rows])
    return out


@dataclass
class SISAConfig:
    """Options of SISA.

    Attributes:
        n_shards: number of user shards K (one model each).
        aggregation: how scores are formed from the shard models; ``"owner"``: the model
            of the user's shard scores the user. Names come from :data:`AGGREGATIONS`.
    """

    n_shards: int = 10
    aggregation: str = "owner"

    def __post_init__(self) -> None:
        if (isinstance(self.n_shards, bool) or not isinstance(self.n_shards, (int, np.integer))
                or self.n_shards < 1):
            raise ConfigError(f"SISAConfig.n_shards must be an integer >= 1, "
                              f"got {self.n_shards!r}")
        self.n_shards = int(self.n_shards)
        if self.aggregation not in AGGREGATIONS:
            hint = suggest(str(self.aggregation), AGGREGATIONS.names())
            raise ConfigError(f"SISAConfig.aggregation: unknown aggregation "
                              f"{self.aggregation!r}{hint}")


@UNLEARNERS.register("sisa")
class SISA(UnlearnerBase):
    """Exact unlearning with K user shards, one model per shard.

    Choices (where the paper is silent or the setting differs):

    * Partition: all ``n_users`` user indices (not only users with rows) are dealt to shards
      by :func:`balanced_partition` with ``rng(seed, "sisa", "partition")``, so shard sizes
      in users differ by at most one and every user, even one with no rows or a forgotten
      one, keeps an owner. The partition never changes after ``fit``.
    * Shard s trains on the training rows of its users, in their order in ``train_``, with
      seed ``child_seed(seed, "shard", s)``, early-stopping on the validation rows of its
      users only. Every shard model has the full id space (all users and items).
    * Shard data is not copied: it is selected from ``train_`` / ``valid_`` when a shard is
      trained (:meth:`shard_data`), so ``train_`` and ``valid_`` are the only copies.
    * ``forget`` retrains from scratch exactly the shards that lose at least one training
      or validation row (a validation row steers early stopping, so losing one changes the
      shard's model); an item request affects every shard holding that item. Other shard
      models are kept as they are (the same objects and tensors).
    * No slicing: the paper's slice checkpoints trade storage for retraining time and can
      be added as a separate method.

    Attributes:
        assignment_: int64 shard per user index.
        models_: one model per shard.
    """

    name = "sisa"
    exact = True
    supports = frozenset({"user", "interaction", "item"})
    Config = SISAConfig

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        super().__init__(model, model_config, config)
        self.assignment_: np.ndarray | None = None
        self.models_: list[EmbeddingRecommender] = []

    # ------------------------------------------------------------------ shards
    @property
    def n_shards(self) -> int:
        """Number of shards K."""
        return self.config.n_shards

    def shard_seed(self, shard: int) -> int:
        """Seed of every (re)training of ``shard``: ``child_seed(seed, "shard", shard)``."""
        return child_seed(self.seed_, "shard", int(shard))

    def shard_users(self, shard: int) -> np.ndarray:
        """Sorted user indices owned by ``shard``."""
        self._check_fitted()
        return np.flatnonzero(self.assignment_ == shard)

    def shard_data(self, shard: int, train: Dataset | None = None,
                   valid: Dataset | None = None) -> tuple[Dataset, Dataset | None]:
        """The rows of ``shard``'s users in ``train`` / ``valid`` (default: the current data).

        Rows keep their order, so a shard trained on this data is the shard's fresh fit.
        """
        self._check_fitted()
        if train is None:
            train, valid = self.train_, self.valid_
        own = self.assignment_ == shard
        return train.select(own[train.users]), (None if valid is None
                                                 else valid.select(own[valid.users]))

    def _train_shard(self, shard: int, train: Dataset, valid: Dataset | None,
                     progress: bool = False) -> EmbeddingRecommender:
        tr, va = self.shard_data(shard, train, valid)
        return self._new_model().fit(tr, va, seed=self.shard_seed(shard), progress=progress)

    # ------------------------------------------------------------------ learning
    def _fit(self, progress: bool) -> dict[str, Any]:
        n_users = self.train_.n_users
        if self.n_shards > n_users:
            raise ConfigError(f"SISA: n_shards={self.n_shards} exceeds the number of users "
                              f"({n_users})")
        self.assignment_ = balanced_partition(n_users, self.n_shards, self.seed_)
        self.assignment_.setflags(write=False)
        models, seconds = [], []
        for s in range(self.n_shards):
            t0 = time.perf_counter()
            models.append(self._train_shard(s, self.train_, self.valid_, progress))
            seconds.append(time.perf_counter() - t0)
        self.models_ = models
        rows = np.bincount(self.assignment_[self.train_.users], minlength=self.n_shards)
        return {"n_shards": self.n_shards, "shard_rows": rows.tolist(),
                "shard_seconds": seconds}

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        hit = [self.assignment_[self.train_.users[train_removed]]]
        if self.valid_ is not None:
            hit.append(self.assignment_[self.valid_.users[valid_removed]])
        shards = np.unique(np.concatenate(hit)).tolist()
        new, seconds = {}, []
        for s in shards:
            t0 = time.perf_counter()
            new[s] = self._train_shard(s, train, valid)
            seconds.append(time.perf_counter() - t0)
        self.models_ = [new.get(s, m) for s, m in enumerate(self.models_)]  # commit
        return [f"shard {s}" for s in shards], {"shards": shards, "shard_seconds": seconds}

    # ------------------------------------------------------------------ inference
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` by the configured aggregation."""
        self._check_fitted()
        return AGGREGATIONS.get(self.config.aggregation)(self, self._check_users(users))

    def user_shards(self) -> np.ndarray:
        """The shard owning each user (the fixed partition)."""
        self._check_fitted()
        return np.asarray(self.assignment_, dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def persistent_models(self) -> dict[str, EmbeddingRecommender]:
        """``{"shards/000": model 0, ...}``."""
        self._check_fitted()
        return {f"shards/{s:03d}": m for s, m in enumerate(self.models_)}

    def persistent_arrays(self) -> dict[str, np.ndarray]:
        """``{"assignment": shard per user}``."""
        self._check_fitted()
        return {"assignment": np.asarray(self.assignment_, dtype=np.int64)}

    def restore_state(self, models: dict[str, EmbeddingRecommender],
                      arrays: dict[str, np.ndarray]) -> None:
        """Take the loaded shard models and assignment (checked against the data)."""
        a = np.asarray(arrays.get("assignment", np.zeros(0)), dtype=np.int64)
        if a.shape != (self.train_.n_users,) or (len(a) and (a.min() < 0
                                                              or a.max() >= self.n_shards)):
            raise DataFormatError(f"SISA state: the shard assignment must give a shard in "
                                  f"0..{self.n_shards - 1} for each of the "
                                  f"{self.train_.n_users} users")
        a.setflags(write=False)
        self.assignment_ = a
        self.models_ = [models[f"shards/{s:03d}"] for s in range(self.n_shards)]
