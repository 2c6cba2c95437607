"""RecEraser: exact recommendation unlearning with balanced partitions and attention.

Chen, Sun, Zhang & Ding, "Recommendation Unlearning", WWW 2022.

* **Partition.** A small model (WMF by default) is pretrained on the training rows; its
  embeddings are split into K balanced parts by anchor clustering with nearest pairs
  assigned first and at most ``ceil(1.2 N / K)`` per part: user-based (UBP,
  :func:`~trustrec.unlearn.partition.balanced_kmeans` on user embeddings) or
  interaction-based (IBP,
  :func:`~trustrec.unlearn.partition.interaction_balanced_partition` on (user, item) rows).
* **Sub-models.** One model per shard, trained on the shard's rows only (seed
  ``child_seed(seed, "shard", s)``).
* **Attention aggregation.** Shard s's user and item embeddings are transformed,
  ``e'_s = W_s e_s + b_s``; attention weights ``a_s = softmax_s(hᵀ ReLU(W e'_s + b))`` are
  computed separately for users (``W_A, b_A, h_A``) and items (``W_B, b_B, h_B``), attention
  size d/2; ``e = Σ_s a_s e'_s`` and the score is ``e_u · e_i``. The aggregator is trained
  with BPR on the training rows, the sub-models frozen.
* **Unlearning.** Retrain the shards that lost a row, then retrain the aggregator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trustrec.config import check_ranges
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models.base import EmbeddingRecommender
from trustrec.seeding import child_seed, rng
from trustrec.threads import torch_threads
from trustrec.train.sampling import sample_negatives
from trustrec.unlearn.base import UNLEARNERS
from trustrec.unlearn.ensemble import (
    ShardEnsemble,
    check_pretrain_config,
    check_shard_config,
    pretrained_embeddings,
)
from trustrec.unlearn.partition import balanced_kmeans, interaction_balanced_partition

#: Models whose score is the dot product of ``user_embeddings()`` and ``item_embeddings()``
#: (what the attention aggregator combines).
DOT_PRODUCT_MODELS = frozenset({"bpr", "wmf", "lightgcn"})
#: Partitions of RecEraser: user-based (UBP) and interaction-based (IBP).
PARTITIONS = ("user", "interaction")
#: Names of the aggregator's parameters, in a fixed order.
AGGREGATOR_PARAMS = ("shard_w", "shard_b", "user_att_w", "user_att_b", "user_att_h",
                     "item_att_w", "item_att_b", "item_att_h")


@dataclass
class RecEraserConfig:
    """Options of RecEraser.

    Attributes:
        n_shards: number of shards K.
        partition: ``"user"`` (UBP) or ``"interaction"`` (IBP).
        capacity: a shard holds at most ``ceil(capacity * N / K)`` users (UBP) or rows (IBP).
        partition_iters: most iterations of the anchor clustering (the paper's T).
        pretrain_model: the model whose embeddings are partitioned.
        pretrain_config: its options (few epochs: only the partition needs it).
        agg_epochs: aggregator epochs (one pass over the training rows each).
        agg_lr: Adam learning rate of the aggregator.
        agg_batch_size: training rows per aggregator step.
        agg_reg: L2 penalty on the aggregated embeddings of each batch's user, positive
            and negative item (mean over the batch).
        attention_dim: attention size; 0 means half the sub-models' embedding width.
        agg_threads: torch intra-op threads while training the aggregator (restored
            afterwards; 0 keeps the current setting). With more than one thread, MKL may
            split long reductions differently from run to run, and then retraining would
            not give the same bits.
        aggregation: ``"attention"`` (the only one: the paper's aggregator).
    """

    n_shards: int = 10
    partition: str = "user"
    capacity: float = 1.2
    partition_iters: int = 50
    pretrain_model: str = "wmf"
    pretrain_config: dict[str, Any] = field(default_factory=lambda: {"dim": 32, "epochs": 5})
    agg_epochs: int = 10
    agg_lr: float = 0.01
    agg_batch_size: int = 16384
    agg_reg: float = 1e-4
    attention_dim: int = 0
    agg_threads: int = 1
    aggregation: str = "attention"

    def __post_init__(self) -> None:
        check_shard_config(self, ("attention",))
        if self.partition not in PARTITIONS:
            raise ConfigError(f"RecEraserConfig.partition must be one of {PARTITIONS} (UBP, "
                              f"IBP), got {self.partition!r}")
        check_ranges(self, at_least_one=("partition_iters", "agg_epochs", "agg_batch_size",
                                         "capacity"),
                     positive=("agg_lr",), non_negative=("agg_reg", "attention_dim",
                                                         "agg_threads"))
        check_pretrain_config(self)


# ---------------------------------------------------------------------------- aggregator


def init_aggregator(n_shards: int, dim: int, att_dim: int, seed: int
                    ) -> dict[str, torch.Tensor]:
    """Initial aggregator parameters (float32), drawn from ``seed``.

    Transforms start at the identity (``W_s = I``, ``b_s = 0``), so training starts from an
    attention-weighted sum of the sub-models' own embeddings; attention matrices and
    vectors are Glorot-normal, attention biases zero.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def glorot(*shape: int) -> torch.Tensor:
        std = (2.0 / (shape[0] + (shape[1] if len(shape) > 1 else 1))) ** 0.5
        return torch.randn(*shape, generator=gen) * std

    eye = torch.eye(dim).expand(n_shards, dim, dim).clone()
    return {"shard_w": eye, "shard_b": torch.zeros(n_shards, dim),
            "user_att_w": glorot(dim, att_dim), "user_att_b": torch.zeros(att_dim),
            "user_att_h": glorot(att_dim), "item_att_w": glorot(dim, att_dim),
            "item_att_b": torch.zeros(att_dim), "item_att_h": glorot(att_dim)}


def aggregate(params: dict[str, torch.Tensor], emb: torch.Tensor, side: str
              ) -> torch.Tensor:
    """Attention-aggregated embeddings ``(n, d)`` from stacked shard embeddings ``(S, n, d)``.

    ``e'_s = W_s e_s + b_s``; ``a_s = softmax_s(h_sideᵀ ReLU(W_side e'_s + b_side))``;
    returns ``Σ_s a_s e'_s``. ``side`` is ``"user"`` or ``"item"``.
    """
    e = torch.baddbmm(params["shard_b"][:, None, :], emb,
                      params["shard_w"].transpose(1, 2))
    hidden = torch.relu(e @ params[f"{side}_att_w"] + params[f"{side}_att_b"])
    att = torch.softmax(hidden @ params[f"{side}_att_h"], dim=0)  # (S, n)
    return (att[..., None] * e).sum(0)


def stacked_embeddings(models: list[EmbeddingRecommender]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The shard models' embeddings, stacked: ``(S, n_users, d)`` and ``(S, n_items, d)``."""
    # copies: the aggregator never holds (or writes into) the shard models' own arrays
    users = torch.from_numpy(np.stack([np.asarray(m.user_embeddings(), np.float32)
                                       for m in models])).clone()
    items = torch.from_numpy(np.stack([np.asarray(m.item_embeddings(), np.float32)
                                       for m in models])).clone()
    return users, items


def train_aggregator(models: list[EmbeddingRecommender], train: Dataset, seed: int, *,
                     epochs: int, lr: float, batch_size: int, reg: float,
                     att_dim: int = 0) -> dict[str, torch.Tensor]:
    """Train RecEraser's attention aggregator with BPR, the sub-models frozen.

    Each epoch draws one negative per training row (:func:`sample_negatives`, generator
    ``rng(seed, "negatives")``), shuffles the rows with the same generator and takes Adam
    steps on batches of ``batch_size`` rows; each step aggregates the batch's users and all
    items from the precomputed stacked shard embeddings, scores the batch users against
    all items by one matrix product, gathers the rows' scores and minimises
    ``mean(softplus(-(e_u·e_i - e_u·e_j))) + reg * mean(|e_u|² + |e_i|² + |e_j|²)``.

    Args:
        models: the fitted shard models (dot-product models).
        train: the training rows.
        seed: the aggregator's seed (parameter init and sampling).
        epochs: passes over the training rows.
        lr: Adam learning rate.
        batch_size: rows per step.
        reg: L2 penalty weight.
        att_dim: attention size (0: half the embedding width, at least 1).

    Returns:
        The trained parameters (detached float32 tensors, see :data:`AGGREGATOR_PARAMS`).
    """
    users_emb, items_emb = stacked_embeddings(models)
    dim = users_emb.shape[2]
    params = init_aggregator(len(models), dim, att_dim or max(1, dim // 2), seed)
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    gen = rng(seed, "negatives")
    pos_keys = np.sort(train.pair_keys())
    n, n_items = train.n_interactions, train.n_items
    for _ in range(epochs):
        neg = sample_negatives(train.users, pos_keys, n_items, gen)
        order = gen.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            batch_users, inv = np.unique(train.users[rows], return_inverse=True)
            at = torch.from_numpy(inv * n_items)
            i, j = train.items[rows], neg[rows]
            e_users = aggregate(params, users_emb[:, batch_users], "user")
            e_items = aggregate(params, items_emb, "item")
            # the batch users' scores of all items by one matmul; the rows' scores are
            # gathered from it (cheaper than gathering and multiplying d-vectors per row)
            flat = (e_users @ e_items.T).reshape(-1)
            x = flat[at + torch.from_numpy(i)] - flat[at + torch.from_numpy(j)]
            loss = F.softplus(-x).mean()
            if reg:  # mean over rows of |e_u|^2 + |e_i|^2 + |e_j|^2, via counts per id
                cu = torch.from_numpy(np.bincount(inv, minlength=len(batch_users)))
                ci = torch.from_numpy(np.bincount(i, minlength=n_items)
                                      + np.bincount(j, minlength=n_items))
                sq = (cu * e_users.square().sum(1)).sum() + (ci * e_items.square().sum(1)).sum()
                loss = loss + reg * sq / len(rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {k: v.detach() for k, v in params.items()}


@dataclass
class Aggregator:
    """A trained aggregator and the aggregated tables it gives on its shard models."""

    params: dict[str, torch.Tensor]
    user_table: torch.Tensor
    item_table: torch.Tensor

    @classmethod
    def build(cls, params: dict[str, torch.Tensor],
              models: list[EmbeddingRecommender]) -> Aggregator:
        """Aggregate the shard models' embeddings with ``params`` (no gradient)."""
        users_emb, items_emb = stacked_embeddings(models)
        with torch.no_grad():
            return cls(params, aggregate(params, users_emb, "user"),
                       aggregate(params, items_emb, "item"))


# ---------------------------------------------------------------------------- method
@UNLEARNERS.register("receraser")
class RecEraser(ShardEnsemble):
    """RecEraser: balanced partition, one sub-model per shard, attention aggregation.

    Choices (where the paper is silent or the setting differs):

    * Pretraining: ``pretrain_model`` (default WMF, as in RecEraser and CURE4Rec, dim 32,
      5 epochs) is trained on the training rows with ``child_seed(seed, "pretrain")`` and
      discarded once the partition is computed. The partition is fixed at ``fit`` and not
      recomputed when forgetting (a forgotten user keeps its shard), as in the papers; the
      partition itself therefore still reflects the data present at ``fit``, while every
      sub-model and the aggregator are exact.
    * UBP partitions all ``n_users`` users (users without rows too, so each user has an
      owner) with :func:`balanced_kmeans` (capacity 1.2, seed ``child_seed(seed,
      "partition")``), nearest pairs first as the paper says (CURE4Rec's code walks them
      farthest-first).
    * IBP partitions the training rows; a validation row goes to the shard holding most
      of its user's training rows (ties: the lower shard; a user without training rows:
      shard ``user % K``), since validation rows steer the early stopping of the shard that
      serves the user best. The partition is stored as a table of (user, item) keys to
      shards and pruned of forgotten rows; a user's rows may lie in several shards, so
      forgetting a user usually retrains several shards. ``user_shards()`` gives each
      user's majority shard (``-1`` for a user with no training rows left).
    * Aggregator: one transform ``(W_s, b_s)`` per shard shared by users and items,
      initialised at the identity; attention as in the paper. Dropout is omitted; an L2
      penalty ``agg_reg`` on the aggregated embeddings regularises instead. Trained with
      Adam (seed ``child_seed(seed, "aggregator")``) for ``agg_epochs`` epochs on large
      batches, every step re-aggregating the batch's users and all items from the
      precomputed stacked sub-model embeddings (cheap: S·n·d² per step). No
      validation-based stopping. It trains with ``agg_threads=1`` torch thread by default:
      with two threads MKL split long reductions differently from run to run (measured:
      parameters differing by up to 6e-4 between identical runs), which breaks exactness.
    * For BPR with item bias the sub-model embeddings include the bias as an extra column
      (and a constant 1 on the user side), so ``e_u · e_i`` is the sub-model's full score.
    * Sub-models must score by a dot product of their embeddings (bpr, wmf, lightgcn);
      other models (neumf) are a ConfigError at construction.
    * ``forget`` retrains the shards that lost a training or validation row, then the
      aggregator from scratch with the same seed on the remaining training rows, so the
      result equals a fresh aggregator on the new shards.

    Attributes:
        assignment_: int64 shard per user (UBP) or None (IBP).
        models_: one model per shard.
        combiner_: the trained :class:`Aggregator`.
    """

    name = "receraser"
    Config = RecEraserConfig

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        if str(model) not in DOT_PRODUCT_MODELS:
            raise ConfigError(
                f"RecEraser's attention aggregator combines sub-model user and item "
                f"embeddings whose dot product is the score; model {model!r} does not score "
                f"that way. Use one of: {', '.join(sorted(DOT_PRODUCT_MODELS))}")
        super().__init__(model, model_config, config)
        self.pair_keys_: np.ndarray | None = None  # IBP: sorted (user, item) keys
        self.pair_shards_: np.ndarray | None = None  # IBP: shard per key

    # ------------------------------------------------------------------ partition
    def _partition(self, progress: bool) -> dict[str, Any]:
        cfg: RecEraserConfig = self.config
        train, valid = self.train_, self.valid_
        p, q = pretrained_embeddings(train, cfg.pretrain_model, cfg.pretrain_config,
                                     self.seed_)
        seed = child_seed(self.seed_, "partition")
        if cfg.partition == "user":
            a = balanced_kmeans(p, self.n_shards, seed, iters=cfg.partition_iters,
                                capacity=cfg.capacity)
            a.setflags(write=False)
            self.assignment_ = a
            return {"partition": "user"}
        if self.n_shards > train.n_interactions:
            raise ConfigError(f"RecEraser: n_shards={self.n_shards} exceeds the number of "
                              f"training rows ({train.n_interactions})")
        rows = interaction_balanced_partition(p, q, train.users, train.items, self.n_shards,
                                              seed, iters=cfg.partition_iters,
                                              capacity=cfg.capacity)
        keys, shards = train.pair_keys(), rows
        if valid is not None:
            major = self._majority(train.users, rows, train.n_users)
            fallback = np.arange(train.n_users) % self.n_shards
            major = np.where(major >= 0, major, fallback)
            vkeys = valid.pair_keys()
            new = ~np.isin(vkeys, keys)
            keys = np.concatenate([keys, vkeys[new]])
            shards = np.concatenate([shards, major[valid.users[new]]])
        order = np.argsort(keys, kind="stable")
        self._set_pairs(keys[order], shards[order])
        return {"partition": "interaction"}

    def _majority(self, users: np.ndarray, shards: np.ndarray, n_users: int) -> np.ndarray:
        """Per user, the shard holding most of the given rows (-1 for none)."""
        counts = np.bincount(users * self.n_shards + shards,
                             minlength=n_users * self.n_shards).reshape(n_users,
                                                                         self.n_shards)
        return np.where(counts.sum(1) > 0, counts.argmax(1), -1).astype(np.int64)

    def _set_pairs(self, keys: np.ndarray, shards: np.ndarray) -> None:
        keys, shards = np.asarray(keys, np.int64), np.asarray(shards, np.int64)
        keys.setflags(write=False)
        shards.setflags(write=False)
        self.pair_keys_, self.pair_shards_ = keys, shards

    def row_shards(self, data: Dataset) -> np.ndarray:
        """Shard per row of ``data``: the user's shard (UBP) or the row's shard (IBP)."""
        if self.config.partition == "user":
            return self.assignment_[data.users]
        keys = data.pair_keys()
        pos = np.minimum(np.searchsorted(self.pair_keys_, keys), len(self.pair_keys_) - 1)
        if len(keys) and not np.array_equal(self.pair_keys_[pos], keys):
            raise DataFormatError("RecEraser: a row is not in the interaction partition")
        return self.pair_shards_[pos]

    def _prune_partition(self, train: Dataset, valid: Dataset | None) -> None:
        if self.config.partition == "user":
            return
        held = train.pair_keys()
        if valid is not None:
            held = np.concatenate([held, valid.pair_keys()])
        keep = np.isin(self.pair_keys_, held)
        self._set_pairs(self.pair_keys_[keep], self.pair_shards_[keep])

    def user_shards(self) -> np.ndarray:
        """The owning shard per user (UBP) or the user's majority shard (IBP, -1: none)."""
        self._check_fitted()
        if self.config.partition == "user":
            return np.asarray(self.assignment_, dtype=np.int64)
        return self._majority(self.train_.users, self.row_shards(self.train_),
                              self.train_.n_users)

    # ------------------------------------------------------------------ aggregator
    def aggregator_seed(self) -> int:
        """Seed of every (re)training of the aggregator: ``child_seed(seed, "aggregator")``."""
        return child_seed(self.seed_, "aggregator")

    def train_aggregator(self, models: list[EmbeddingRecommender],
                         train: Dataset) -> Aggregator:
        """A fresh aggregator on frozen ``models`` and ``train`` with the aggregator seed."""
        cfg: RecEraserConfig = self.config
        with torch_threads(cfg.agg_threads):
            params = train_aggregator(models, train, self.aggregator_seed(),
                                      epochs=cfg.agg_epochs, lr=cfg.agg_lr,
                                      batch_size=cfg.agg_batch_size, reg=cfg.agg_reg,
                                      att_dim=cfg.attention_dim)
            return Aggregator.build(params, models)

    def _fit_combiner(self, models: list[EmbeddingRecommender], train: Dataset,
                      valid: Dataset | None) -> Aggregator:
        return self.train_aggregator(models, train)

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``e_u · e_i`` of the aggregated embeddings, ``(len(users), n_items)``."""
        self._check_fitted()
        u = torch.from_numpy(self._check_users(users))
        agg: Aggregator = self.combiner_
        with torch.no_grad():
            return (agg.user_table[u] @ agg.item_table.T).numpy()

    # ------------------------------------------------------------------ persistence
    def partition_arrays(self) -> dict[str, np.ndarray]:
        """UBP: ``{"assignment"}``; IBP: ``{"pair_keys", "pair_shards"}``."""
        if self.config.partition == "user":
            return super().partition_arrays()
        return {"pair_keys": np.asarray(self.pair_keys_), "pair_shards":
                np.asarray(self.pair_shards_)}

    def restore_partition(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`partition_arrays`, checked against the data."""
        if self.config.partition == "user":
            super().restore_partition(arrays)
            return
        keys = np.asarray(arrays.get("pair_keys", np.zeros(0)), dtype=np.int64)
        shards = np.asarray(arrays.get("pair_shards", np.zeros(1)), dtype=np.int64)
        held = self.train_.pair_keys()
        if self.valid_ is not None:
            held = np.concatenate([held, self.valid_.pair_keys()])
        if (keys.shape != shards.shape or np.any(np.diff(keys) <= 0)
                or not np.isin(held, keys).all() or (len(shards) and (
                    shards.min() < 0 or shards.max() >= self.n_shards))):
            raise DataFormatError("RecEraser state: the interaction partition must map every "
                                  "held (user, item) row to a shard in "
                                  f"0..{self.n_shards - 1}")
        self._set_pairs(keys, shards)

    def combiner_arrays(self) -> dict[str, np.ndarray]:
        """The aggregator's parameters as ``aggregator.<name>`` float32 arrays."""
        return {f"aggregator.{k}": self.combiner_.params[k].numpy()
                for k in AGGREGATOR_PARAMS}

    def restore_combiner(self, arrays: dict[str, np.ndarray]) -> Aggregator:
        """Rebuild the aggregator from its saved parameters and the loaded shard models."""
        try:
            params = {k: torch.from_numpy(np.array(arrays[f"aggregator.{k}"], np.float32))
                      for k in AGGREGATOR_PARAMS}
        except KeyError as exc:
            raise DataFormatError(f"RecEraser state: aggregator parameter {exc} missing"
                                  ) from None
        with torch_threads(self.config.agg_threads):
            return Aggregator.build(params, self.models_)
