"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A user is the sequence of items it interacted with, oldest first. The model embeds the last
``max_len`` items (item embedding ``× √d`` plus a learned position embedding, dropout),
passes them through ``blocks`` causal self-attention blocks (layer-normed, see below; a
point-wise two-layer feed-forward with ReLU, dropout on both; padded positions zeroed
after each block, as the paper's timeline mask) and a final layer norm; the output at
position ``t`` scores every item as the dot product with the *shared* item embedding
table, i.e. the prediction of item ``t + 1``.

Training (each epoch over the users in a seeded order, mini-batches, Adam): every position
of every training sequence predicts the next item. ``loss = "ce"`` (default) is the
cross-entropy over the whole catalogue (full softmax), which Klenitskiy & Vasilev (RecSys
2023) show beats the paper's loss by a wide margin; ``loss = "bce"`` is the paper's binary
cross-entropy with one uniformly sampled negative per position (a negative may be an item
the user has seen, as in the paper's code for long sequences it rarely is).

Scoring reads each user's history: ``score(users)`` uses the last ``max_len`` items of the
user's *training* sequence, stored with the model at fit (the ``history`` tensor, one row
of item indices per user; it is the model's user representation, as a user embedding is
for matrix factorisation); ``score(Query)`` with histories scores from the given histories
instead (the leave-last-out test: training items plus the validation item). Scores come
from the last position. Seen items are not masked here; the evaluation masks them.

Choices where the paper is silent or that differ from it (each a config field):

* ``loss = "ce"`` by default (see above); ``"bce"`` is the paper's.
* Blocks as the authors' released code: layer norm first, and each residual adds the
  *normed* input (``q = LN(x); x = LN(q + Attn(q, x, x)); x = x + FFN(x)``), where the
  paper's Eq. (4)–(5) figure reads as post-norm; dropout 0.2 (the paper's ML-1M value),
  d = 64, 2 blocks, 1 head.
* ``max_len = 50`` (RecBole's default; the paper uses 200 for ML-1M, 50 for sparser data):
  on MovieLens-100K, leave-last-out, it reaches NDCG@10 0.1029 / HR@10 0.194 (seed 0, 70
  epochs, 75 s on 2 cores); shorter histories are left-padded.
* Early stopping on validation NDCG@20 (the paper reports a fixed number of steps).
* Run-to-run determinism: a seeded torch generator (``torch.random.fork_rng``, so the
  caller's global RNG state is left as it was); bits are equal for the same seed and the
  same number of torch threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from trustrec.config import NonNegativeFloat, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.models.base import MODELS, AfterEpoch, EmbeddingRecommender
from trustrec.seeding import child_seed, rng
from trustrec.train.loop import train_epochs


@typed_config
class SASRecConfig:
    """Hyper-parameters of SASRec.

    Attributes:
        dim: hidden size (item and position embeddings).
        blocks: self-attention blocks.
        heads: attention heads (must divide ``dim``).
        max_len: items of a history the model reads (the most recent ones).
        dropout: dropout rate of embeddings, attention and feed-forward layers.
        loss: ``"ce"`` (full-softmax cross-entropy) or ``"bce"`` (one sampled negative).
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        batch_size: users (sequences) per step.
        epochs: maximum number of epochs.
        patience: validation evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
        score_batch: users scored at once.
    """

    dim: PositiveInt = 64
    blocks: PositiveInt = 2
    heads: PositiveInt = 1
    max_len: PositiveInt = 50
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    loss: Literal["ce", "bce"] = "ce"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 200
    patience: PositiveInt = 5
    eval_every: PositiveInt = 5
    score_batch: PositiveInt = 512

    def __post_init__(self) -> None:
        from trustrec.errors import ConfigError

        if self.dim % self.heads:
            raise ConfigError(f"SASRecConfig: heads ({self.heads}) must divide dim "
                              f"({self.dim})")


class _Block(nn.Module):
    """One pre-layer-norm causal self-attention block with a point-wise feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor
                ) -> torch.Tensor:
        q = self.attn_norm(x)
        a, _ = self.attn(q, x, x, attn_mask=causal, need_weights=False)
        x = self.ffn_norm(q + a)  # as the released code: residuals of the normed inputs
        return (x + self.ffn(x)) * keep


class SASRecNet(nn.Module):
    """The network: item and position embeddings, blocks, final norm (index 0 = padding)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads, cfg.dropout)
                                    for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-8)
        self.scale = math.sqrt(cfg.dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``(b, L)`` item indices + 1 (0 = padding) -> ``(b, L, d)`` hidden states."""
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).to(torch.float32)
        pos = torch.arange(length, device=seq.device)
        x = self.drop(self.item(seq) * self.scale + self.position(pos)) * keep
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        for block in self.blocks:
            x = block(x, causal, keep)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item (without the padding row) for hidden states ``(..., d)``."""
        return hidden @ self.item.weight[1:].T


def last_items(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
               ) -> np.ndarray:
    """``(n, max_len)`` int64 matrix of ``items[starts[r]:ends[r]]``'s last ``max_len``
    entries, shifted by one and left-padded with 0 (no Python loop over rows)."""
    n = len(starts)
    take = np.minimum(np.maximum(ends - starts, 0), max_len)
    out = np.zeros((n, max_len), dtype=np.int64)
    total = int(take.sum())
    if total == 0:
        return out
    rows = np.repeat(np.arange(n), take)
    offset = np.arange(total) - np.repeat(np.cumsum(take) - take, take)
    cols = max_len - np.repeat(take, take) + offset
    src = np.repeat(ends - take, take) + offset
    out[rows, cols] = np.asarray(items, dtype=np.int64)[src] + 1
    return out


@MODELS.register("sasrec")
class SASRec(EmbeddingRecommender):
    """SASRec (see the module docstring); a sequential model scoring from histories.

    ``params_``: the network's tensors (``item.weight`` ``(n_items + 1, dim)`` with the
    padding row 0, ``position.weight``, the blocks' and the final norm's) and ``history``
    ``(n_users, max_len)`` int64: each user's last training items, shifted by one,
    left-padded with 0.

    Capabilities (:mod:`trustrec.models.capabilities`): none beyond the ``Recommender``
    protocol; it releases no user table (a user is its history).
    """

    name = "sasrec"
    Config = SASRecConfig
    scores_from_history = True

    def param_shapes(self, n_users: int, n_items: int) -> dict[str, tuple[int, ...]]:
        """The network's tensor shapes for ``n_items`` and the ``history`` table."""
        net = SASRecNet(n_items, self.config)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        shapes["history"] = (n_users, int(self.config.max_len))
        return shapes

    def _net(self) -> SASRecNet:
        net = SASRecNet(self.n_items_, self.config)
        net.load_state_dict({k: v for k, v in self.params_.items() if k != "history"})
        return net.eval()

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg: SASRecConfig = self.config
        q = Query.from_dataset(train)
        starts, ends = q.indptr[:-1], q.indptr[1:]
        self.params_ = {}
        history = torch.from_numpy(last_items(q.items, starts, ends, cfg.max_len))
        # training pairs: positions 0..n-2 predict 1..n-1 (users with >= 2 items)
        many = np.flatnonzero(ends - starts >= 2)
        inputs = last_items(q.items, starts[many], ends[many] - 1, cfg.max_len)
        targets = last_items(q.items, starts[many] + 1, ends[many], cfg.max_len)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(child_seed(seed, "sasrec", "torch"))
            net = SASRecNet(train.n_items, cfg)
            net.apply(_init_weights)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay)
            x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(targets)

            def sync() -> None:
                self.params_ = {k: v.detach().clone() for k, v in net.state_dict().items()}
                self.params_["history"] = history

            def epoch_fn(epoch: int) -> float:
                net.train()
                order = rng(seed, "sasrec", "epoch", epoch).permutation(len(many))
                gen = rng(seed, "sasrec", "negatives", epoch)
                total, count = 0.0, 0
                for b in range(0, len(order), cfg.batch_size):
                    idx = torch.from_numpy(order[b:b + cfg.batch_size])
                    x, y = x_all[idx], y_all[idx]
                    h = net(x)
                    mask = y > 0
                    if cfg.loss == "ce":
                        loss = nn.functional.cross_entropy(net.logits(h[mask]), y[mask] - 1)
                    else:
                        neg = torch.from_numpy(gen.integers(1, train.n_items + 1,
                                                            size=tuple(y.shape)))
                        hp, e = h[mask], net.item
                        pos_s = (hp * e(y[mask])).sum(-1)
                        neg_s = (hp * e(neg[mask])).sum(-1)
                        loss = (nn.functional.softplus(-pos_s)
                                + nn.functional.softplus(neg_s)).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    n = int(mask.sum())
                    total += float(loss.detach()) * n
                    count += n
                net.eval()
                sync()
                return total / max(count, 1)

            sync()
            train_epochs(self, epoch_fn, epochs=cfg.epochs, train=train, valid=valid,
                         patience=cfg.patience, eval_every=cfg.eval_every,
                         progress=progress, after_epoch=after_epoch, desc="sasrec")

    # ------------------------------------------------------------------ inference
    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """Scores ``(n, n_items)`` from the last position of each user's history: the
        query's histories when it has them, else the stored training histories."""
        self._check_fitted()
        cfg: SASRecConfig = self.config
        if isinstance(query, Query) and query.has_history:
            seqs = torch.from_numpy(last_items(query.items, query.indptr[:-1],
                                               query.indptr[1:], cfg.max_len))
        else:
            seqs = self.params_["history"][torch.from_numpy(query_users(query))]
        net = self._net()
        out = np.empty((len(seqs), self.n_items_), dtype=np.float32)
        with torch.no_grad():
            for b in range(0, len(seqs), cfg.score_batch):
                h = net(seqs[b:b + cfg.score_batch])[:, -1]
                out[b:b + cfg.score_batch] = net.logits(h).numpy()
        return out

    def user_embeddings(self) -> np.ndarray:
        """``(n_users, dim)``: the hidden state after each user's training history (what
        scores the next item)."""
        self._check_fitted()
        net, seqs = self._net(), self.params_["history"]
        with torch.no_grad():
            return torch.cat([net(seqs[b:b + self.config.score_batch])[:, -1]
                              for b in range(0, len(seqs), self.config.score_batch)]
                             ).numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim)``: the shared item embedding table (without the padding row)."""
        self._check_fitted()
        return self.params_["item.weight"][1:].numpy()


def _init_weights(module: nn.Module) -> None:
    """Xavier-normal weight matrices, zero biases (the released code's initialisation);
    layer norms keep ones and zeros."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
