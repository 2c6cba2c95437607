"""BCE-MF: dot-product matrix factorisation trained pointwise with binary cross-entropy.

This is the model CURE4Rec's released code calls "WMF" (``utils.baseTrain``): user and item
embeddings, score ``p_u · q_i``, trained with ``BCEWithLogits`` on every training pair
(label 1) and one uniformly sampled non-interacted item per pair and epoch (label 0), by
Adam (lr 1e-3) on mini-batches of 1,024 labelled pairs, dimension 32, 50 epochs. It is not
Hu et al.'s weighted whole-data WMF (:mod:`trustrec.models.wmf`); trustrec carries it so
that ``protocol = "cure4rec"`` reproduces that paper's setting.

Implementation: one numba loop per epoch over a seeded shuffle of the labelled pairs,
hand-written gradients, and dense Adam on both tables (every row's moments decay every
step, as torch's ``nn.Embedding`` + ``Adam`` do with dense gradients); single-threaded in a
fixed order, so the same seed gives the same bits.

Choices where the code is silent or unreadable: embeddings start ``N(0, 0.1²)``; no weight
decay (torch's Adam default); the loss is the mean over a batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np
import torch

from trustrec.config import NonNegativeFloat, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.models.base import MODELS, AfterEpoch, EmbeddingRecommender, normal_tables
from trustrec.models.capabilities import TableScorer
from trustrec.models.objective import Params, PointwiseObjective, Rows, gather, soft_bce
from trustrec.seeding import rng
from trustrec.train.loop import train_epochs
from trustrec.train.sampling import sample_negatives


@typed_config
class BCEMFConfig:
    """Hyper-parameters of BCE-MF (defaults: CURE4Rec's released code).

    Attributes:
        dim: latent dimension.
        lr: Adam learning rate.
        batch_size: labelled pairs per Adam step.
        n_neg: sampled negatives per training pair and epoch.
        init_scale: standard deviation of the normal initialisation.
        epochs: maximum number of epochs.
        patience: validation evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
    """

    dim: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 1024
    n_neg: PositiveInt = 1
    init_scale: NonNegativeFloat = 0.1
    epochs: PositiveInt = 50
    patience: PositiveInt = 5
    eval_every: PositiveInt = 1


@numba.njit(cache=True, nogil=True, fastmath=True)
def bce_adam_epoch(user_f: np.ndarray, item_f: np.ndarray, moments: np.ndarray,
                   users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                   order: np.ndarray, batch: int, lr: float, step: int) -> tuple[float, int]:
    """One epoch of mini-batch Adam on the BCE loss, tables updated in place.

    ``moments`` is ``(4, n_users + n_items, d)`` float32: Adam's first and second moments of
    the user rows then the item rows (``[0]``/``[1]`` users, ``[2]``/``[3]`` items, each
    padded to the larger table). Returns the mean loss and the new step count.
    """
    n_u, d = user_f.shape
    n_i = item_f.shape[0]
    b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
    gu = np.zeros((n_u, d), dtype=np.float32)
    gi = np.zeros((n_i, d), dtype=np.float32)
    total = 0.0
    for start in range(0, order.shape[0], batch):
        stop = min(start + batch, order.shape[0])
        inv_b = np.float32(1.0 / (stop - start))
        gu[:] = 0
        gi[:] = 0
        for k in range(start, stop):
            r = order[k]
            u, i, y = users[r], items[r], labels[r]
            x = np.float32(0.0)
            for f in range(d):
                x += user_f[u, f] * item_f[i, f]
            # BCE with logits: softplus(x) - y x; d/dx = sigmoid(x) - y
            if x >= 0:
                e = np.exp(-x)
                sig = np.float32(1.0) / (np.float32(1.0) + e)
                total += np.log1p(e) + x - y * x
            else:
                e = np.exp(x)
                sig = e / (np.float32(1.0) + e)
                total += np.log1p(e) - y * x
            g = (sig - y) * inv_b
            for f in range(d):
                gu[u, f] += g * item_f[i, f]
                gi[i, f] += g * user_f[u, f]
        step += 1
        c1 = np.float32(1.0 - 0.9 ** step)
        c2 = np.float32(np.sqrt(1.0 - 0.999 ** step))
        a = np.float32(lr) * c2 / c1
        _adam_rows(user_f, gu, moments[0], moments[1], a, b1, b2, eps * c2)
        _adam_rows(item_f, gi, moments[2], moments[3], a, b1, b2, eps * c2)
    return total / max(order.shape[0], 1), step


@numba.njit(cache=True, nogil=True, fastmath=True)
def _adam_rows(table: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
               a: np.float32, b1: np.float32, b2: np.float32, eps: np.float32) -> None:
    """Dense Adam step on every row of ``table`` (bias corrections folded into ``a``, ``eps``)."""
    one = np.float32(1.0)
    n = table.shape[0] * table.shape[1]
    t, gr = table.reshape(n), grad.reshape(n)
    mf, vf = m.reshape(-1)[:n], v.reshape(-1)[:n]
    for k in range(n):
        g = gr[k]
        mm = b1 * mf[k] + (one - b1) * g
        vv = b2 * vf[k] + (one - b2) * g * g
        mf[k] = mm
        vf[k] = vv
        t[k] -= a * mm / (np.sqrt(vv) + eps)


class BCEMFObjective(PointwiseObjective):
    """BCE-MF's pointwise BCE, differentiable (:mod:`trustrec.models.objective`).

    Per row ``ℓ = BCE(p_u·q_i, y) + n_neg · mean_k BCE(p_u·q_{j_k}, 0)`` with hashed
    negatives, no L2 (the model has none).
    """

    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r [BCE(p_u·q_i, y) + n_neg·mean_k BCE(p_u·q_{j_k}, 0)]``."""
        pu = gather(params["user"], rows.users)                       # (n, d)
        qi = gather(params["item"], rows.items)                       # (n, d)
        qj = gather(params["item"], rows.negatives)                   # (n, k, d)
        pos = soft_bce((pu * qi).sum(1), rows.labels)
        neg = soft_bce((pu.unsqueeze(1) * qj).sum(2), torch.zeros(()))
        weight = float(self.model.config.n_neg) / max(rows.negatives.shape[1], 1)
        return (rows.weights * (pos + weight * neg.sum(1))).sum()


@MODELS.register("bcemf")
class BCEMF(EmbeddingRecommender):
    """BCE-MF (CURE4Rec's "WMF"); score = ``p_u · q_i``.

    ``params_``: ``user`` ``(n_users, dim)`` and ``item`` ``(n_items, dim)`` float32.

    Capabilities (:mod:`trustrec.models.capabilities`): ``ReleasesUserTable`` (``user``),
    ``PairScorer``, ``HasTrainingObjective`` (:class:`BCEMFObjective`), ``WarmStart`` and
    ``DotProductScores``, ``TrainsUserTables``.
    """

    name = "bcemf"
    Config = BCEMFConfig

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg: BCEMFConfig = self.config
        self.params_ = self._initial(normal_tables(rng(seed, "bcemf", "init"), train.n_users,
                                                   train.n_items, cfg.dim, cfg.init_scale),
                                     init)
        n_tab = max(train.n_users, train.n_items)
        moments = np.zeros((4, n_tab, cfg.dim), dtype=np.float32)
        users = train.users.astype(np.int64)
        items = train.items.astype(np.int64)
        keys = np.unique(train.pair_keys())
        n = len(users)
        state = {"step": 0}

        def epoch_fn(epoch: int) -> float:
            if n == 0:
                return 0.0
            gen = rng(seed, "bcemf", "epoch", epoch)
            neg = sample_negatives(np.repeat(users, cfg.n_neg), keys, train.n_items, gen)
            all_u = np.concatenate([users, np.repeat(users, cfg.n_neg)])
            all_i = np.concatenate([items, np.asarray(neg, dtype=np.int64)])
            labels = np.concatenate([np.ones(n, np.float32),
                                     np.zeros(n * cfg.n_neg, np.float32)])
            order = gen.permutation(len(all_u))
            loss, state["step"] = bce_adam_epoch(
                self.params_["user"].numpy(), self.params_["item"].numpy(), moments,
                all_u, all_i, labels, order, int(cfg.batch_size), float(cfg.lr),
                int(state["step"]))
            return loss

        train_epochs(self, epoch_fn, epochs=cfg.epochs, train=train, valid=valid,
                     patience=cfg.patience, eval_every=cfg.eval_every, progress=progress,
                     after_epoch=after_epoch, desc="bcemf")

    # ------------------------------------------------------------------ capabilities
    def released_user_table(self) -> np.ndarray:
        """The user embeddings ``params_["user"]`` ``(n_users, dim)`` (a view)."""
        return self._table_view("user")

    def with_released_user_table(self, table: np.ndarray | torch.Tensor) -> BCEMF:
        """A copy with the user embeddings replaced by ``table`` (see
        ``ReleasesUserTable``)."""
        return self._with_table("user", table)

    def pair_scorer(self, users: torch.Tensor, items: torch.Tensor) -> TableScorer:
        """``table -> (r, k)`` scores ``table[u] · q_i`` (see ``PairScorer``)."""
        return self._dot_pair_scorer(users, items, "item")

    def training_objective(self, seed: int = 0, n_neg: int | None = None
                           ) -> BCEMFObjective:
        """:class:`BCEMFObjective` of the fitted model (``n_neg`` hashed negatives per row,
        default the model's ``n_neg``, drawn with ``seed``)."""
        return BCEMFObjective(self, seed, n_neg)

    def trained_user_tables(self) -> tuple[str, ...]:
        """The user embeddings."""
        return ("user",)

    def warm_start_state(self) -> Mapping[str, torch.Tensor]:
        """The fitted ``params_`` (``fit(init=...)`` starts from them)."""
        self._check_fitted()
        return self.params_

    def score_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_embeddings(), item_embeddings())``, whose product is the score."""
        return self.user_embeddings(), self.item_embeddings()
