"""Shard ensembles: K sub-models, each trained on one part of the data, plus a combiner.

:class:`ShardEnsemble` holds the machinery SISA, RecEraser and UltraRE share: training
shard s on its rows with ``child_seed(seed, "shard", s)``, retraining on ``forget`` exactly
the shards that lose a row (then the combiner, if the method has one), persistence of the
shard models, the partition and the combiner, and ``user_shards()``. A subclass chooses the
partition (:meth:`ShardEnsemble._partition`), and optionally trains a combiner on the
frozen shard models (:meth:`ShardEnsemble._fit_combiner`) and scores with it.

:data:`AGGREGATIONS` holds the combiner-free ways to score from the shard models:
``"owner"`` (the model of the user's shard) and ``"average"`` (mean of all shard models).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np

from trustrec.config import one_of, to_dict
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models.base import EmbeddingRecommender
from trustrec.registry import Registry
from trustrec.seeding import child_seed
from trustrec.unlearn.base import UnlearnerBase

#: How shard models' scores become one score per (user, item): ``f(ensemble, users)``.
Aggregation = Callable[["ShardEnsemble", np.ndarray], np.ndarray]
AGGREGATIONS: Registry[Aggregation] = Registry("shard aggregation")


@AGGREGATIONS.register("owner")
def owner_scores(ens: ShardEnsemble, users: np.ndarray) -> np.ndarray:
    """Each user is scored by the model of the shard that owns the user.

    Vectorised per shard: the users are grouped by owner and each shard model scores its
    group in one call.
    """
    shard = ens.owner_of(users)
    out = np.empty((len(users), ens.train_.n_items), dtype=np.float32)
    for s in np.unique(shard):
        rows = np.flatnonzero(shard == s)
        out[rows] = ens.models_[s].score(users[rows])
    return out


@AGGREGATIONS.register("average")
def average_scores(ens: ShardEnsemble, users: np.ndarray) -> np.ndarray:
    """The mean of all shard models' scores (UltraRE's released code scores this way)."""
    out = np.zeros((len(users), ens.train_.n_items), dtype=np.float32)
    for m in ens.models_:
        out += m.score(users)
    out /= np.float32(len(ens.models_))
    return out


def _model_names() -> list[str]:
    from trustrec.models import MODELS  # registers every model

    return MODELS.names()


#: A config field naming the registered model to pretrain (a typo names the field and
#: the closest model).
PretrainModel = Annotated[str, one_of(_model_names, "model")]


def check_pretrain_config(cfg: Any) -> None:
    """Validate ``cfg.pretrain_model`` / ``cfg.pretrain_config`` by building the model (a
    check across configs, run by the method config's ``__post_init__``), and keep the
    given options converted by the model config's field types (``"8"`` for ``dim`` is 8).

    Raises:
        ConfigError: unknown or bad model option (UnknownNameError for an unknown model).
    """
    from trustrec.models import make_model

    typed = to_dict(make_model(cfg.pretrain_model, **cfg.pretrain_config).config)
    cfg.pretrain_config = {k: typed[k] for k in cfg.pretrain_config}


def pretrained_embeddings(train: Dataset, model: str, config: dict[str, Any],
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings of a small model trained on ``train`` for partitioning.

    The model is trained without validation data (its configured epochs) with seed
    ``child_seed(seed, "pretrain")`` and discarded afterwards: only the partition it
    induces is kept.

    Returns:
        ``(user_embeddings, item_embeddings)`` as float32 arrays.
    """
    from trustrec.models import make_model

    m = make_model(model, **config).fit(train, None, seed=child_seed(seed, "pretrain"))
    return np.asarray(m.user_embeddings()), np.asarray(m.item_embeddings())


class ShardEnsemble(UnlearnerBase):
    """Base of exact shard-ensemble unlearners (SISA, RecEraser, UltraRE).

    A subclass implements :meth:`_partition` (set :attr:`assignment_`, the shard per user,
    or override :meth:`row_shards` for a partition of rows) and :meth:`score`; it may train
    a combiner on the frozen shard models by overriding :meth:`_fit_combiner` and the
    combiner persistence hooks.

    Choices shared by all shard ensembles:

    * The partition is computed once in ``fit`` and never changes: a forgotten user keeps
      its shard, later requests are served by the same partition.
    * Shard s trains on its training rows, in their order in ``train_``, with seed
      ``child_seed(seed, "shard", s)``, early-stopping on its validation rows only. Every
      shard model has the full id space (all users and items).
    * Shard data is not copied: it is selected from ``train_`` / ``valid_`` when a shard is
      trained (:meth:`shard_data`).
    * ``forget`` retrains from scratch exactly the shards that lose at least one training
      or validation row (a validation row steers early stopping), then the combiner (from
      scratch, with its own seed) on the new shard models and the remaining training rows.
      Other shard models are kept as they are (the same objects and tensors). The new
      models are built first and committed at the end, so an error changes nothing.
    * ``workers > 1`` (re)trains up to that many shards at once in threads. The training
      kernels of BPR-MF, WMF and LightGCN are numba code that releases the GIL, so the
      threads run in parallel; each shard is trained exactly as alone (own data, own
      seed, single-threaded kernel), so the models are bitwise the same as with one
      worker. A model whose training sets process-wide torch threads
      (``parallel_safe = False``: NeuMF) is trained one shard at a time.

    Attributes:
        assignment_: int64 shard per user index (None for a row partition).
        models_: one model per shard.
        combiner_: the combiner's state (None when the method has none).
    """

    exact = True
    supports = frozenset({"user", "interaction", "item"})

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        super().__init__(model, model_config, config)
        self.assignment_: np.ndarray | None = None
        self.models_: list[EmbeddingRecommender] = []
        self.combiner_: Any = None

    # ------------------------------------------------------------------ shards
    @property
    def n_shards(self) -> int:
        """Number of shards K."""
        return self.config.n_shards

    def shard_seed(self, shard: int) -> int:
        """Seed of every (re)training of ``shard``: ``child_seed(seed, "shard", shard)``."""
        return child_seed(self.seed_, "shard", int(shard))

    def row_shards(self, data: Dataset) -> np.ndarray:
        """Shard per row of ``data`` (the unlearner's data or a subset of its rows).

        Default: the shard of the row's user.
        """
        return self.assignment_[data.users]

    def owner_of(self, users: np.ndarray) -> np.ndarray:
        """The shard owning each of ``users`` (user partitions only)."""
        if self.assignment_ is None:
            raise ConfigError(f"{self.name}: this partition does not give users an owner "
                              "shard")
        return self.assignment_[users]

    def shard_users(self, shard: int) -> np.ndarray:
        """Sorted user indices owned by ``shard`` (user partitions only)."""
        self._check_fitted()
        return np.flatnonzero(self.assignment_ == shard)

    def shard_data(self, shard: int, train: Dataset | None = None,
                   valid: Dataset | None = None) -> tuple[Dataset, Dataset | None]:
        """The rows of ``shard`` in ``train`` / ``valid`` (default: the current data).

        Rows keep their order, so a shard trained on this data is the shard's fresh fit.
        """
        self._check_fitted()
        if train is None:
            train, valid = self.train_, self.valid_
        tr = train.select(self.row_shards(train) == shard)
        return tr, None if valid is None else valid.select(self.row_shards(valid) == shard)

    def train_shard(self, shard: int, train: Dataset | None = None,
                    valid: Dataset | None = None, progress: bool = False
                    ) -> EmbeddingRecommender:
        """A fresh model of ``shard`` trained on its rows of ``train`` / ``valid``."""
        tr, va = self.shard_data(shard, train, valid)
        return self._new_model().fit(tr, va, seed=self.shard_seed(shard), progress=progress)

    def _train_shards(self, shards: list[int], train: Dataset, valid: Dataset | None,
                      progress: bool = False
                      ) -> dict[int, tuple[EmbeddingRecommender, float]]:
        """Fresh models of ``shards`` with their training seconds, ``workers`` at a time."""
        def one(s: int) -> tuple[EmbeddingRecommender, float]:
            t0 = time.perf_counter()
            model = self.train_shard(s, train, valid, progress)
            return model, time.perf_counter() - t0

        workers = min(self.config.workers, len(shards))
        if workers <= 1 or not getattr(self._new_model(), "parallel_safe", True):
            return {s: one(s) for s in shards}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(shards, pool.map(one, shards), strict=True))

    # ------------------------------------------------------------------ hooks
    def _partition(self, progress: bool) -> dict[str, Any]:
        """Compute the partition from ``train_`` / ``valid_`` (sets ``assignment_``)."""
        raise NotImplementedError

    def _fit_combiner(self, models: list[EmbeddingRecommender], train: Dataset,
                      valid: Dataset | None) -> Any:
        """Train the combiner on frozen ``models`` and ``train``; None: no combiner."""
        return None

    def _prune_partition(self, train: Dataset, valid: Dataset | None) -> None:
        """After a forget: drop partition state about rows no longer held (default: none)."""

    def combiner_arrays(self) -> dict[str, np.ndarray]:
        """The combiner's state as arrays (saved with the unlearner)."""
        return {}

    def restore_combiner(self, arrays: dict[str, np.ndarray]) -> Any:
        """Inverse of :meth:`combiner_arrays` (returns the new ``combiner_``)."""
        return None

    # ------------------------------------------------------------------ learning
    def _fit(self, progress: bool) -> dict[str, Any]:
        n_users = self.train_.n_users
        if self.n_shards > n_users:
            raise ConfigError(f"{self.name}: n_shards={self.n_shards} exceeds the number of "
                              f"users ({n_users})")
        t0 = time.perf_counter()
        details = dict(self._partition(progress) or {})
        details["partition_seconds"] = time.perf_counter() - t0
        trained = self._train_shards(list(range(self.n_shards)), self.train_, self.valid_,
                                     progress)
        models = [trained[s][0] for s in range(self.n_shards)]
        seconds = [trained[s][1] for s in range(self.n_shards)]
        t0 = time.perf_counter()
        combiner = self._fit_combiner(models, self.train_, self.valid_)
        if combiner is not None:
            details["combiner_seconds"] = time.perf_counter() - t0
        self.models_, self.combiner_ = models, combiner
        rows = np.bincount(self.row_shards(self.train_), minlength=self.n_shards)
        return {"n_shards": self.n_shards, "shard_rows": rows.tolist(),
                "shard_seconds": seconds, **details}

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        hit = [self.row_shards(self.train_)[train_removed]]
        if self.valid_ is not None:
            hit.append(self.row_shards(self.valid_)[valid_removed])
        shards = np.unique(np.concatenate(hit)).tolist()
        trained = self._train_shards(shards, train, valid)
        seconds = [trained[s][1] for s in shards]
        models = [trained[s][0] if s in trained else m for s, m in enumerate(self.models_)]
        combiner = self._fit_combiner(models, train, valid)
        self._prune_partition(train, valid)  # commit
        self.models_, self.combiner_ = models, combiner
        retrained = [f"shard {s}" for s in shards] + ([] if combiner is None
                                                      else ["combiner"])
        return retrained, {"shards": shards, "shard_seconds": seconds}

    # ------------------------------------------------------------------ inference
    def user_shards(self) -> np.ndarray:
        """The shard owning each user (the fixed partition)."""
        self._check_fitted()
        return np.asarray(self.assignment_, dtype=np.int64)

    def released_tables(self, side: str) -> list[np.ndarray]:
        """Every shard model's ``side`` table (``"user"`` / ``"item"``): what the saved
        ensemble releases, and what a fold-in attack can use
        (:mod:`trustrec.evaluate.suite`)."""
        self._check_fitted()
        return [np.asarray(m.user_embeddings() if side == "user" else m.item_embeddings())
                for m in self.models_]

    # ------------------------------------------------------------------ persistence
    def persistent_models(self) -> dict[str, EmbeddingRecommender]:
        """``{"shards/000": model 0, ...}``."""
        self._check_fitted()
        return {f"shards/{s:03d}": m for s, m in enumerate(self.models_)}

    def partition_arrays(self) -> dict[str, np.ndarray]:
        """The partition as arrays: ``{"assignment": shard per user}``."""
        return {"assignment": np.asarray(self.assignment_, dtype=np.int64)}

    def restore_partition(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`partition_arrays`, checked against the data."""
        a = np.asarray(arrays.get("assignment", np.zeros(0)), dtype=np.int64)
        if a.shape != (self.train_.n_users,) or (len(a) and (a.min() < 0
                                                              or a.max() >= self.n_shards)):
            raise DataFormatError(f"{self.name} state: the shard assignment must give a "
                                  f"shard in 0..{self.n_shards - 1} for each of the "
                                  f"{self.train_.n_users} users")
        a.setflags(write=False)
        self.assignment_ = a

    def persistent_arrays(self) -> dict[str, np.ndarray]:
        """The partition's arrays and the combiner's."""
        self._check_fitted()
        return {**self.partition_arrays(), **self.combiner_arrays()}

    def restore_state(self, models: dict[str, EmbeddingRecommender],
                      arrays: dict[str, np.ndarray]) -> None:
        """Take the loaded shard models, partition and combiner (checked against the data)."""
        self.restore_partition(arrays)
        self.models_ = [models[f"shards/{s:03d}"] for s in range(self.n_shards)]
        self.combiner_ = self.restore_combiner(arrays)
