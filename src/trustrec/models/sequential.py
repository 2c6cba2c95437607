"""What every sequential recommender shares: histories, next-item training, scoring.

A sequential model reads a user as the items it interacted with, oldest first, and scores
the next item. Its network (SASRec, GRU4Rec, NARM, ...) maps a ``(batch, max_len)`` matrix
of item indices + 1 (0 = left padding) to one hidden state per position
(:meth:`SequenceNet.forward`); the hidden state at position ``t`` scores every item as the
dot product with the network's *shared* item embedding table (:meth:`SequenceNet.logits`),
i.e. predicts item ``t + 1``. The rest is here, once:

* **Histories.** ``fit`` stores each user's last ``max_len`` training items (the
  ``history`` tensor, ``(n_users, max_len)`` int64, left-padded): the model's user
  representation, as a user embedding is for matrix factorisation. ``score(users)`` reads
  it; ``score(Query)`` with histories reads those instead (the leave-last-out test:
  training items plus the validation item, ``evaluate_ranking(..., history=...)``).
  Built with array operations (:func:`last_items`), no loop over users or rows.
* **Training.** Every position of every training sequence predicts the next item, in
  mini-batches of users in a seeded order, by Adam. ``loss = "ce"``: cross-entropy over
  the whole catalogue (full softmax; Klenitskiy & Vasilev, RecSys 2023, show it beats the
  sampled losses of the original papers); ``loss = "bce"``: binary cross-entropy with one
  uniformly sampled negative per position (SASRec's paper). Early stopping on validation
  NDCG@20 (:func:`trustrec.train.loop.train_epochs`).
* **Determinism.** Initialisation and dropout draw from torch's generator seeded from the
  fit's seed inside ``torch.random.fork_rng`` (the caller's global RNG state is left as it
  was); bits are equal for the same seed and the same number of torch threads.

Subclasses set ``name``, a typed ``Config`` extending :class:`SequentialConfig` and
``network(n_items)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from trustrec.config import NonNegativeFloat, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.models.base import AfterEpoch, EmbeddingRecommender
from trustrec.seeding import child_seed, rng
from trustrec.train.loop import train_epochs

#: A dropout rate.
Dropout = Annotated[float, Field(ge=0, lt=1)]


@typed_config
class SequentialConfig:
    """Hyper-parameters every sequential model has.

    Attributes:
        dim: hidden size (and item embedding size).
        max_len: items of a history the model reads (the most recent ones).
        dropout: dropout rate.
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
    max_len: PositiveInt = 50
    dropout: Dropout = 0.2
    loss: Literal["ce", "bce"] = "ce"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 200
    patience: PositiveInt = 5
    eval_every: PositiveInt = 5
    score_batch: PositiveInt = 512


class SequenceNet(nn.Module):
    """Base of the networks: ``item`` embedding (row 0 = padding) shared by the output."""

    item: nn.Embedding

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``(b, L)`` item indices + 1 (0 = padding) -> ``(b, L, d)`` hidden states; the
        state at ``t`` may read positions ``<= t`` only."""
        raise NotImplementedError

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


def init_weights(module: nn.Module) -> None:
    """Xavier-normal weight matrices of linear and embedding layers, zero biases, a zero
    padding row (the released SASRec code's initialisation; recurrent and attention
    layers keep torch's own)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


class SequentialRecommender(EmbeddingRecommender):
    """A model that scores the next item from a user's history (see the module docstring).

    ``params_``: the network's tensors (``item.weight`` ``(n_items + 1, dim)`` with the
    padding row 0, and the network's own) and ``history`` ``(n_users, max_len)`` int64.

    Capabilities (:mod:`trustrec.models.capabilities`): none beyond the ``Recommender``
    protocol; it releases no user table (a user is its history).
    """

    scores_from_history: ClassVar[bool] = True

    def network(self, n_items: int) -> SequenceNet:
        """A freshly initialised network of this config for ``n_items`` items."""
        raise NotImplementedError

    def param_shapes(self, n_users: int, n_items: int) -> dict[str, tuple[int, ...]]:
        """The network's tensor shapes for ``n_items`` and the ``history`` table."""
        with torch.random.fork_rng(devices=[]):  # building draws; leave the caller's RNG
            shapes = {k: tuple(v.shape) for k, v in self.network(n_items).state_dict().items()}
        shapes["history"] = (n_users, int(self.config.max_len))
        return shapes

    def _net(self) -> SequenceNet:
        with torch.random.fork_rng(devices=[]):
            net = self.network(self.n_items_)
        net.load_state_dict({k: v for k, v in self.params_.items() if k != "history"})
        return net.eval()

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg = self.config
        q = Query.from_dataset(train)
        starts, ends = q.indptr[:-1], q.indptr[1:]
        history = torch.from_numpy(last_items(q.items, starts, ends, cfg.max_len))
        # training pairs: positions 0..n-2 predict 1..n-1 (users with >= 2 items)
        many = np.flatnonzero(ends - starts >= 2)
        x_all = torch.from_numpy(last_items(q.items, starts[many], ends[many] - 1,
                                            cfg.max_len))
        y_all = torch.from_numpy(last_items(q.items, starts[many] + 1, ends[many],
                                            cfg.max_len))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(child_seed(seed, self.name, "torch"))
            net = self.network(train.n_items)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay)

            def sync() -> None:
                self.params_ = {k: v.detach().clone() for k, v in net.state_dict().items()}
                self.params_["history"] = history

            def epoch_fn(epoch: int) -> float:
                net.train()
                order = rng(seed, self.name, "epoch", epoch).permutation(len(many))
                gen = rng(seed, self.name, "negatives", epoch)
                total, count = 0.0, 0
                for b in range(0, len(order), cfg.batch_size):
                    idx = torch.from_numpy(order[b:b + cfg.batch_size])
                    x, y = x_all[idx], y_all[idx]
                    mask = y > 0
                    h = net(x)[mask]
                    if cfg.loss == "ce":
                        loss = nn.functional.cross_entropy(net.logits(h), y[mask] - 1)
                    else:
                        neg = torch.from_numpy(gen.integers(1, train.n_items + 1,
                                                            size=int(mask.sum())))
                        pos_s = (h * net.item(y[mask])).sum(-1)
                        neg_s = (h * net.item(neg)).sum(-1)
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
                         progress=progress, after_epoch=after_epoch, desc=self.name)

    # ------------------------------------------------------------------ inference
    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """Scores ``(n, n_items)`` from the last position of each user's history: the
        query's histories when it has them, else the stored training histories."""
        self._check_fitted()
        if isinstance(query, Query) and query.has_history:
            seqs = torch.from_numpy(last_items(query.items, query.indptr[:-1],
                                               query.indptr[1:], self.config.max_len))
        else:
            seqs = self.params_["history"][torch.from_numpy(query_users(query))]
        net, step = self._net(), self.config.score_batch
        out = np.empty((len(seqs), self.n_items_), dtype=np.float32)
        with torch.no_grad():
            for b in range(0, len(seqs), step):
                out[b:b + step] = net.logits(net(seqs[b:b + step])[:, -1]).numpy()
        return out

    def user_embeddings(self) -> np.ndarray:
        """``(n_users, dim)``: the hidden state after each user's training history (what
        scores the next item)."""
        self._check_fitted()
        net, seqs, step = self._net(), self.params_["history"], self.config.score_batch
        with torch.no_grad():
            return torch.cat([net(seqs[b:b + step])[:, -1]
                              for b in range(0, len(seqs), step)]).numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim)``: the shared item embedding table (without the padding row)."""
        self._check_fitted()
        return self.params_["item.weight"][1:].numpy()
