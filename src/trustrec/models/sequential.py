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

* **Adversarial training** (``adv_eps > 0``): a defense against profile pollution
  (:class:`_Adversary`).
* **Long-tail training** (``optimizer`` = ``"sam"`` / ``"eisam"``, ``reweight`` =
  ``"ips"`` / ``"logit_adjust"``): each batch's per-sample losses go to the shared
  :class:`~trustrec.train.longtail.Stepper` (not combined with adversarial training).

Subclasses set ``name``, a typed ``Config`` extending :class:`SequentialConfig` and
``network(n_items)``. A model trained on another task than the next item (BERT4Rec's
Cloze task) also overrides :meth:`SequentialRecommender.training_batch` (inputs and
targets of a batch of windows), :meth:`SequentialRecommender.model_input` (what the
network reads to score the next item), ``window_extra`` and ``input_shift``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from trustrec.config import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.errors import ConfigError
from trustrec.models.base import AfterEpoch, EmbeddingRecommender
from trustrec.seeding import child_seed, rng
from trustrec.train.longtail import Stepper, TailOptions
from trustrec.train.loop import train_epochs

#: A dropout rate.
Dropout = Annotated[float, Field(ge=0, lt=1)]


@typed_config
class SequentialConfig(TailOptions):
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
        adv_eps: adversarial training (a defense against pollution): the L2 size of the
            per-position perturbation of the input embeddings; 0 = off (see
            :class:`_Adversary`).
        adv_weight: weight of the adversarial loss.
        device: where the network trains and scores: ``"cpu"`` (default: the same bits on
            every machine), ``"cuda"`` (an error at fit where none is available) or
            ``"auto"`` (CUDA where available). Parameters are kept on the CPU between
            epochs either way; a saved model scores on the CPU where its device is
            missing.

    And the long-tail options of :class:`~trustrec.train.longtail.TailOptions`.
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
    adv_eps: NonNegativeFloat = 0.0
    adv_weight: NonNegativeFloat = 1.0
    device: Literal["cpu", "cuda", "auto"] = "cpu"


def torch_device(name: str, fallback: bool = False) -> torch.device:
    """The torch device of a config's ``device`` (see :class:`SequentialConfig`).

    Args:
        name: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        fallback: the CPU where ``"cuda"`` is missing (scoring a loaded model), instead
            of the error.

    Raises:
        ConfigError: ``"cuda"`` where no CUDA device is available (without ``fallback``).
    """
    if name == "auto" or (name == "cuda" and fallback):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device here; "
                          "use device = 'auto' (CUDA where available) or 'cpu'")
    return torch.device(name)


def check_heads(cfg: SequentialConfig) -> None:
    """Attention heads must divide the hidden size (a clear error at config time)."""
    heads = getattr(cfg, "heads", 1)
    if cfg.dim % heads:
        raise ConfigError(f"{type(cfg).__name__}: heads ({heads}) must divide dim "
                          f"({cfg.dim})")


class SequenceNet(nn.Module):
    """Base of the networks: ``item`` embedding (row 0 = padding) shared by the output."""

    item: nn.Embedding

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``(b, L)`` item indices + 1 (0 = padding) -> ``(b, L, d)`` hidden states; the
        state at ``t`` may read positions ``<= t`` only."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item (without the padding row) for hidden states ``(..., d)``."""
        return hidden @ self.item.weight[1:self.n_items + 1].T

    def pair_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``(n,)`` of item indices + 1 ``items`` for hidden states ``(n, d)``
        (the matching entries of :meth:`logits`, without scoring the catalogue)."""
        return (hidden * self.item(items)).sum(-1)

    @property
    def n_items(self) -> int:
        """Items scored (the embedding table may hold more rows: padding, a mask)."""
        return self.item.num_embeddings - 1


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


class _Adversary:
    """Adversarial training on the input item embeddings (APR, He et al., SIGIR 2018,
    applied to a sequence model's input as in Yue et al.'s substitution defense): after
    the clean loss's backward pass, each position's input embedding is moved by ``eps``
    along its loss gradient (unit L2 norm per position, FGSM), and the loss at the moved
    embeddings is added (weight ``adv_weight``)."""

    def __init__(self, net: SequenceNet, eps: float) -> None:
        self.eps = eps
        self.grab = False
        self.emb: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        net.item.register_forward_hook(self._hook)

    def _hook(self, _m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor | None:
        if self.delta is not None:  # the next input lookup: shifted
            delta, self.delta = self.delta, None
            return out + delta
        if self.grab:
            self.grab = False
            out.retain_grad()
            self.emb = out
        return None

    def capture(self) -> None:
        """Keep the next input lookup's output (and its gradient)."""
        self.grab = True

    def perturb_next(self) -> None:
        """Shift the next input lookup by ``eps`` along the kept gradient."""
        assert self.emb is not None and self.emb.grad is not None
        self.delta = self.eps * nn.functional.normalize(self.emb.grad.detach(), dim=-1)
        self.emb = None


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

    #: Extra items a training window holds beyond ``max_len`` (next-item training reads
    #: ``max_len + 1``: inputs are the first ``max_len``, targets the last ``max_len``).
    window_extra: ClassVar[int] = 1

    def training_batch(self, windows: torch.Tensor, gen: np.random.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(b, max_len)`` and targets (item index + 1; 0 = no loss there) for a
        batch of training windows: every position predicts the next item."""
        x, y = windows[:, :-1], windows[:, 1:]
        return x, y * (x > 0)

    #: Oldest window columns :meth:`model_input` drops (column ``c`` of the input is
    #: column ``c + input_shift`` of the history).
    input_shift: ClassVar[int] = 0

    def model_input(self, history: torch.Tensor) -> torch.Tensor:
        """What the network reads to score the item after ``history`` (``(b, max_len)``);
        the state at its last position scores."""
        return history

    def trained_network(self) -> SequenceNet:
        """The fitted network (a fresh module in eval mode each call: safe to modify)."""
        with torch.random.fork_rng(devices=[]):
            net = self.network(self.n_items_)
        net.load_state_dict({k: v for k, v in self.params_.items() if k != "history"})
        return net.eval()

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg = self.config
        if cfg.adv_eps > 0 and (cfg.optimizer != "adam" or cfg.reweight != "none"):
            raise ConfigError(f"{self.name}: adversarial training (adv_eps > 0) runs with "
                              f"optimizer 'adam' and reweight 'none', got "
                              f"{cfg.optimizer!r} / {cfg.reweight!r}")
        q = Query.from_dataset(train)
        starts, ends = q.indptr[:-1], q.indptr[1:]
        history = torch.from_numpy(last_items(q.items, starts, ends, cfg.max_len))
        many = np.flatnonzero(ends - starts >= 2)  # users with something to predict
        window_users = torch.from_numpy(np.asarray(q.users[many], dtype=np.int64))
        windows = torch.from_numpy(last_items(q.items, starts[many], ends[many],
                                              cfg.max_len + self.window_extra))
        dev = torch_device(cfg.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(child_seed(seed, self.name, "torch"))
            net = self.network(train.n_items).to(dev)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay)

            def sync() -> None:
                self.params_ = {k: v.detach().cpu().clone()
                                for k, v in net.state_dict().items()}
                self.params_["history"] = history

            adv = _Adversary(net, cfg.adv_eps) if cfg.adv_eps > 0 else None
            stepper = Stepper.from_config(net.parameters(), opt, train, cfg).to(dev)
            offset = stepper.logit_offset

            def sample_losses(x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor | None,
                              rows: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
                """Per-position losses, targets and (given the windows' users) users."""
                mask = y > 0
                h, target = net(x)[mask], y[mask] - 1
                users = None if rows is None else rows[:, None].expand_as(y)[mask]
                if neg is None:
                    logits = net.logits(h)
                    if offset is not None:
                        logits = logits + offset
                    return (nn.functional.cross_entropy(logits, target, reduction="none"),
                            target, users)
                pos, other = net.pair_logits(h, y[mask]), net.pair_logits(h, neg)
                if offset is not None:
                    pos, other = pos + offset[target], other + offset[neg - 1]
                return (nn.functional.softplus(-pos) + nn.functional.softplus(other), target,
                        users)

            def epoch_fn(epoch: int) -> float:
                net.train()
                order = rng(seed, self.name, "epoch", epoch).permutation(len(many))
                gen = rng(seed, self.name, "negatives", epoch)
                total, count = 0.0, 0
                for b in range(0, len(order), cfg.batch_size):
                    chunk = order[b:b + cfg.batch_size]
                    x, y = self.training_batch(windows[torch.from_numpy(chunk)], gen)
                    x, y = x.to(dev), y.to(dev)
                    rows = window_users[torch.from_numpy(chunk)].to(dev)
                    n = int((y > 0).sum())
                    neg = None if cfg.loss == "ce" else torch.from_numpy(
                        gen.integers(1, train.n_items + 1, size=n)).to(dev)
                    if adv is None:
                        loss = stepper.step(lambda x=x, y=y, neg=neg, rows=rows:
                                            sample_losses(x, y, neg, rows))
                    else:
                        opt.zero_grad()
                        adv.capture()
                        loss_t = sample_losses(x, y, neg)[0].mean()
                        loss_t.backward()
                        adv.perturb_next()  # the same batch at the worst nearby embeddings
                        (cfg.adv_weight * sample_losses(x, y, neg)[0].mean()).backward()
                        opt.step()
                        loss = float(loss_t.detach())
                    total += loss * n
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
        dev = torch_device(self.config.device, fallback=True)
        net, step = self.trained_network().to(dev), self.config.score_batch
        out = np.empty((len(seqs), self.n_items_), dtype=np.float32)
        with torch.no_grad():
            for b in range(0, len(seqs), step):
                h = self.encode(seqs[b:b + step].to(dev), net)
                out[b:b + step] = net.logits(h).cpu().numpy()
        return out

    def encode(self, seqs: torch.Tensor, net: SequenceNet | None = None) -> torch.Tensor:
        """The state that scores the item after each history, ``(b, dim)``, for
        left-padded histories ``(b, max_len)`` of item indices + 1 (the model's
        representation of a sequence; no gradient unless ``net`` is given and grad is on).

        Args:
            seqs: histories, as :func:`last_items` builds them.
            net: the network to run (default: :meth:`trained_network`, without gradient).
        """
        self._check_fitted()
        if net is None:
            net = self.trained_network()
            with torch.no_grad():
                return self.encode(seqs, net)
        step = self.config.score_batch
        return torch.cat([net(self.model_input(seqs[b:b + step]))[:, -1]
                          for b in range(0, len(seqs), step)])

    def user_embeddings(self) -> np.ndarray:
        """``(n_users, dim)``: the hidden state after each user's training history (what
        scores the next item)."""
        return self.encode(self.params_["history"]).numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim)``: the shared item embedding table (without the padding row)."""
        self._check_fitted()
        return self.params_["item.weight"][1:self.n_items_ + 1].numpy()
