"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking (Rendle et al., 2009).

For a training pair (u, i) and a sampled item j the user has not interacted with, BPR
maximises ``log σ(x_uij)`` with ``x_uij = b_i − b_j + p_u · (q_i − q_j)``. Training is plain
SGD with hand-written gradients in a numba-compiled loop over a seeded shuffle of the
training rows (one update per row per epoch, single-threaded, so the same seed gives
bitwise-identical parameters); negatives are drawn for the whole epoch at once by
:func:`trustrec.train.sampling.sample_negatives`. This is ~20x faster than autograd + Adam in
PyTorch, whose per-batch framework overhead (embedding backward scatter-add, gathers,
optimiser state) dwarfs the arithmetic at this size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numba
import numpy as np
import torch

from trustrec.config import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.models.base import MODELS, AfterEpoch, EmbeddingRecommender, normal_tables
from trustrec.models.capabilities import TableScorer
from trustrec.models.objective import Objective, Params, Rows, gather, soft_bce
from trustrec.seeding import rng
from trustrec.train.longtail import item_sharpness
from trustrec.train.loop import train_epochs
from trustrec.train.sampling import sample_negatives


@typed_config
class BPRConfig:
    """Hyper-parameters of BPR-MF.

    Attributes:
        dim: latent dimension.
        lr: SGD learning rate.
        reg: L2 penalty on the user and item vectors touched by each update.
        bias_reg: L2 penalty on the item biases touched by each update.
        use_bias: learn an item bias (added to every score of that item).
        init_scale: standard deviation of the normal initialisation of the factors.
        lr_decay: the learning rate of epoch ``e`` is ``lr * lr_decay ** (e - 1)``.
        epochs: maximum number of epochs (one SGD pass over the training rows each).
        patience: validation evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
        optimizer: ``"sgd"``, or SGD under per-row ``"sam"`` / ``"eisam"``
            (:func:`bpr_sam_epoch`).
        rho: SAM / EISAM radius.
        eisam_lambda: EISAM's ``λ``.
        eisam_gamma: EISAM's ``γ`` of the frequency weight.
    """

    dim: PositiveInt = 64
    lr: PositiveFloat = 0.1
    reg: NonNegativeFloat = 0.015
    bias_reg: NonNegativeFloat = 0.0
    use_bias: bool = True
    init_scale: NonNegativeFloat = 0.01
    lr_decay: UnitInterval = 0.97
    epochs: PositiveInt = 300
    patience: PositiveInt = 6
    eval_every: PositiveInt = 5
    optimizer: Literal["sgd", "sam", "eisam"] = "sgd"
    rho: PositiveFloat = 0.05
    eisam_lambda: UnitInterval = 1.0
    eisam_gamma: NonNegativeFloat = 1.0


@numba.njit(cache=True, nogil=True, fastmath=True)
def _bpr_grad(x: np.float32) -> tuple[np.float32, float]:
    """``z = σ(−x)`` (the loss's gradient is ``−z`` in ``x``) and the loss
    ``softplus(−x)``, both stable for any sign of ``x``."""
    one = np.float32(1.0)
    if x >= 0:
        e = np.exp(-x)
        return e / (one + e), np.log1p(e)
    e = np.exp(x)
    return one / (one + e), np.log1p(e) - x


@numba.njit(cache=True, nogil=True, fastmath=True)
def bpr_sgd_epoch(user_f: np.ndarray, item_f: np.ndarray, item_b: np.ndarray,
                  users: np.ndarray, items: np.ndarray, order: np.ndarray, negs: np.ndarray,
                  lr: float, reg: float, bias_reg: float, use_bias: bool) -> float:
    """One SGD pass of BPR over ``order`` (row indices), updating the tables in place.

    Arithmetic is float32 (``fastmath`` lets the dot product vectorise); the loop is
    single-threaded and its order fixed, so results are bitwise reproducible on a machine.

    Args:
        user_f: ``(n_users, d)`` float32 user factors.
        item_f: ``(n_items, d)`` float32 item factors.
        item_b: ``(n_items,)`` float32 item biases.
        users: user index per training row.
        items: item index per training row.
        order: the rows to visit, in order.
        negs: one negative item per entry of ``order``.
        lr: learning rate.
        reg: L2 penalty on factors.
        bias_reg: L2 penalty on biases.
        use_bias: update the biases (otherwise they stay as they are).

    Returns:
        Mean BPR loss ``-log sigmoid(x_uij)`` over the visited rows (before each update).
    """
    d = user_f.shape[1]
    one = np.float32(1.0)
    lr32 = np.float32(lr)
    breg = np.float32(bias_reg)
    decay = one - lr32 * np.float32(reg)  # weight decay of the touched rows
    total = 0.0
    for k in range(order.shape[0]):
        r = order[k]
        u = users[r]
        i = items[r]
        j = negs[k]
        x = np.float32(0.0)
        for f in range(d):
            x += user_f[u, f] * (item_f[i, f] - item_f[j, f])
        if use_bias:
            x += item_b[i] - item_b[j]
        z, loss = _bpr_grad(x)
        total += loss
        step = lr32 * z
        for f in range(d):
            pu = user_f[u, f]
            qi = item_f[i, f]
            qj = item_f[j, f]
            user_f[u, f] = decay * pu + step * (qi - qj)
            item_f[i, f] = decay * qi + step * pu
            item_f[j, f] = decay * qj - step * pu
        if use_bias:
            bi = item_b[i]
            bj = item_b[j]
            item_b[i] = bi + lr32 * (z - breg * bi)
            item_b[j] = bj - lr32 * (z + breg * bj)
    return total / max(order.shape[0], 1)


@numba.njit(cache=True, nogil=True, fastmath=True)
def bpr_sam_epoch(user_f: np.ndarray, item_f: np.ndarray, item_b: np.ndarray,
                  users: np.ndarray, items: np.ndarray, order: np.ndarray, negs: np.ndarray,
                  lr: float, reg: float, bias_reg: float, use_bias: bool, rho: float,
                  sharp: np.ndarray) -> float:
    """One SGD pass of BPR under (item-wise) sharpness-aware minimisation, in place.

    Each row is its own batch (BPR-MF's SGD): with ``g`` the gradient of the row's loss in
    the parameters it touches (``p_u, q_i, q_j, b_i, b_j``) and ``ε = ρ g/‖g‖``, the step
    applies ``(1 − c_i) g + c_i ∇ℓ(θ + ε)``, ``c_i = sharp[i]`` the weight of the
    positive item: ``sharp ≡ 1`` is SAM (per-row, m = 1), EISAM's
    :func:`~trustrec.train.longtail.item_sharpness` weights make tail items'
    rows sharpness-aware (the Focal-SAM split of :mod:`trustrec.train.longtail`; for a
    single row the weighted ascent direction is the row's own). The L2 decay and the
    rest are :func:`bpr_sgd_epoch`'s. About 1.5× its arithmetic (one more dot product).

    Returns:
        Mean BPR loss over the visited rows (at ``θ``, before each update).
    """
    d = user_f.shape[1]
    one = np.float32(1.0)
    two = np.float32(2.0)
    lr32 = np.float32(lr)
    breg = np.float32(bias_reg)
    decay = one - lr32 * np.float32(reg)
    total = 0.0
    for k in range(order.shape[0]):
        r = order[k]
        u = users[r]
        i = items[r]
        j = negs[k]
        x = np.float32(0.0)
        sq = np.float32(2.0) if use_bias else np.float32(0.0)
        for f in range(d):
            dq = item_f[i, f] - item_f[j, f]
            x += user_f[u, f] * dq
            sq += dq * dq + two * user_f[u, f] * user_f[u, f]
        if use_bias:
            x += item_b[i] - item_b[j]
        z, loss = _bpr_grad(x)
        total += loss
        c = np.float32(sharp[i])
        s = np.float32(rho) / max(np.sqrt(sq), np.float32(1e-12))
        # At θ + ε (ε = −s·(q_i − q_j, p_u, −p_u, 1, −1), the loss's ascent direction):
        # p_u' = p_u − s·dq, q_i' − q_j' = dq − 2s·p_u, b_i' − b_j' = b_i − b_j − 2s.
        x2 = np.float32(0.0)
        for f in range(d):
            dq = item_f[i, f] - item_f[j, f]
            x2 += (user_f[u, f] - s * dq) * (dq - two * s * user_f[u, f])
        if use_bias:
            x2 += item_b[i] - item_b[j] - two * s
        z2, _ = _bpr_grad(x2)
        a = lr32 * (one - c) * z
        b = lr32 * c * z2
        for f in range(d):
            pu = user_f[u, f]
            qi = item_f[i, f]
            qj = item_f[j, f]
            dq = qi - qj
            pu2 = pu - s * dq
            user_f[u, f] = decay * pu + a * dq + b * (dq - two * s * pu)
            item_f[i, f] = decay * qi + a * pu + b * pu2
            item_f[j, f] = decay * qj - a * pu - b * pu2
        if use_bias:
            bi = item_b[i]
            bj = item_b[j]
            item_b[i] = bi + a + b - lr32 * breg * bi
            item_b[j] = bj - a - b - lr32 * breg * bj
    return total / max(order.shape[0], 1)


class BPRObjective(Objective):
    """BPR-MF's training objective, differentiable (:mod:`trustrec.models.objective`).

    Per row ``ℓ = mean_k BCE(x_{u,i,j_k}, y) + reg/2 (‖p_u‖² + ‖q_i‖² + mean_k ‖q_{j_k}‖²)
    + bias_reg/2 (b_i² + mean_k b_{j_k}²)`` with ``x_uij = p_u·(q_i − q_j) + b_i − b_j`` and
    ``BCE(x, y) = softplus(−x) + (1 − y)·x`` (for ``y = 1`` BPR's ``−log σ(x)``). The L2
    terms are attached to rows because BPR's SGD decays the rows each update touches. The
    negatives ``j_k`` are ``n_neg`` (default 1) hashed negatives per row
    (:func:`~trustrec.models.objective.hashed_negatives`).
    """

    n_neg = 1

    def __init__(self, model: EmbeddingRecommender, seed: int = 0,
                 n_neg: int | None = None) -> None:
        super().__init__(model, seed, n_neg)
        self.use_bias = bool(model.config.use_bias)
        self.item_tables = ("item", "item_bias") if self.use_bias else ("item",)

    def collaborative_labels(self, removed: Dataset, remaining: Dataset) -> np.ndarray:
        """½ for every removed row.

        A BPR row's label says "the user prefers item i to the sampled item j". Once i is
        forgotten both are unobserved for the user, and over the pairs of unobserved items
        the retained data implies each order equally often: the mean label is ½, the same
        for every user and item. The corrected row pulls ``x_uij`` towards 0 (i ranked
        like a typical unobserved item) instead of only dropping its push upwards.
        """
        return np.full(removed.n_interactions, 0.5, dtype=np.float32)

    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r [mean_k BCE(x_{u,i,j_k}, y_r) + L2 of the touched rows]``."""
        cfg = self.model.config
        p, q = params["user"], params["item"]
        pu = gather(p, rows.users)                    # (n, d)
        qi = gather(q, rows.items)                    # (n, d)
        qj = gather(q, rows.negatives)                # (n, k, d)
        # elementwise product and sum: einsum lowers this to a batched matmul of tiny
        # matrices, several times slower (forward and backward) on a CPU
        x = (pu.unsqueeze(1) * (qi.unsqueeze(1) - qj)).sum(2)
        if self.use_bias:
            b = params["item_bias"]
            bi, bj = gather(b, rows.items), gather(b, rows.negatives)
            x = x + (bi.unsqueeze(1) - bj)
        per_row = soft_bce(x, rows.labels.unsqueeze(1)).mean(1)
        if regularize:
            l2 = 0.5 * cfg.reg * (pu.square().sum(1) + qi.square().sum(1)
                                  + qj.square().sum(2).mean(1))
            if self.use_bias and cfg.bias_reg:
                l2 = l2 + 0.5 * cfg.bias_reg * (bi.square() + bj.square().mean(1))
            per_row = per_row + l2
        return (rows.weights * per_row).sum()


    def shrunk_tables(self) -> frozenset[str]:
        """``user`` and ``item`` when ``reg > 0``; ``item_bias`` when ``bias_reg > 0``."""
        cfg = self.model.config
        out = {"user", "item"} if cfg.reg > 0 else set()
        if self.use_bias and cfg.bias_reg > 0:
            out.add("item_bias")
        return frozenset(out)

    def l2_counts(self, rows: Rows, n_users: int, n_items: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Users once per row; the item once and each of the k negatives 1/k times."""
        w = rows.weights.numpy().astype(np.float64)
        uc = np.bincount(rows.users.numpy(), weights=w, minlength=n_users)
        ic = np.bincount(rows.items.numpy(), weights=w, minlength=n_items)
        negs = rows.negatives.numpy()
        ic += np.bincount(negs.reshape(-1), weights=np.repeat(w / negs.shape[1], negs.shape[1]),
                          minlength=n_items)
        return uc, ic

    def node_l2(self, params: Params, user_counts: np.ndarray,
                item_counts: np.ndarray) -> torch.Tensor:
        """``reg/2 Σ c_u ‖p_u‖² + reg/2 Σ c_i ‖q_i‖² + bias_reg/2 Σ c_i b_i²``."""
        cfg = self.model.config
        uc = torch.as_tensor(user_counts, dtype=torch.float32)
        ic = torch.as_tensor(item_counts, dtype=torch.float32)
        out = 0.5 * cfg.reg * ((uc * params["user"].square().sum(1)).sum()
                               + (ic * params["item"].square().sum(1)).sum())
        if self.use_bias and cfg.bias_reg:
            out = out + 0.5 * cfg.bias_reg * (ic * params["item_bias"].square()).sum()
        return out


@MODELS.register("bpr")
class BPR(EmbeddingRecommender):
    """BPR-MF with an optional item bias; score = ``p_u · q_i + b_i``.

    ``params_``: ``user`` ``(n_users, dim)``, ``item`` ``(n_items, dim)``, ``item_bias``
    ``(n_items,)`` (all float32; the bias is zero and unused when ``use_bias`` is false).
    ``user_embeddings()`` / ``item_embeddings()`` return ``[p_u, 1]`` and ``[q_i, b_i]``
    (width ``dim + 1``) when the bias is used, so their dot product is the score.

    Capabilities (:mod:`trustrec.models.capabilities`): ``ReleasesUserTable`` (the factors
    ``user``), ``PairScorer``, ``HasTrainingObjective`` (:class:`BPRObjective`),
    ``WarmStart``, ``DotProductScores`` and ``TrainsUserTables``.
    """

    name = "bpr"
    Config = BPRConfig

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg: BPRConfig = self.config
        gen = rng(seed, "bpr", "init")
        fresh = normal_tables(gen, train.n_users, train.n_items, cfg.dim, cfg.init_scale)
        fresh["item_bias"] = torch.zeros(train.n_items, dtype=torch.float32)
        self.params_ = self._initial(fresh, init)
        users = train.users.astype(np.int64)
        items = train.items.astype(np.int64)
        keys = np.unique(train.pair_keys())
        n = len(users)
        sharp = (np.ones(train.n_items, np.float32) if cfg.optimizer == "sam" else
                 item_sharpness(train.item_counts(), cfg.eisam_lambda, cfg.eisam_gamma))

        def epoch_fn(epoch: int) -> float:
            if n == 0:
                return 0.0
            gen = rng(seed, "bpr", "epoch", epoch)
            order = gen.permutation(n)
            negs = sample_negatives(users[order], keys, train.n_items, gen)
            lr = cfg.lr * cfg.lr_decay ** (epoch - 1)
            args = (self.params_["user"].numpy(), self.params_["item"].numpy(),
                    self.params_["item_bias"].numpy(), users, items, order, negs,
                    float(lr), float(cfg.reg), float(cfg.bias_reg), bool(cfg.use_bias))
            if cfg.optimizer == "sgd":
                return bpr_sgd_epoch(*args)
            return bpr_sam_epoch(*args, float(cfg.rho), sharp)

        train_epochs(self, epoch_fn, epochs=cfg.epochs, train=train, valid=valid,
                     patience=cfg.patience, eval_every=cfg.eval_every, progress=progress,
                     after_epoch=after_epoch, desc="bpr")

    def param_shapes(self, n_users: int, n_items: int) -> dict[str, tuple[int, ...]]:
        """``user``, ``item`` and ``item_bias`` (kept, zero, when the bias is unused)."""
        return {**super().param_shapes(n_users, n_items), "item_bias": (n_items,)}

    # ------------------------------------------------------------------ inference
    def _bias(self) -> np.ndarray | None:
        b = self.params_.get("item_bias")
        return b.numpy() if b is not None and self.config.use_bias else None

    def user_embeddings(self) -> np.ndarray:
        """``(n_users, dim [+1])`` user vectors (a constant 1 column when biased)."""
        self._check_fitted()
        u = self.params_["user"].numpy()
        if self._bias() is None:
            return u
        return np.hstack([u, np.ones((len(u), 1), dtype=np.float32)])

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim [+1])`` item vectors (the item bias as last column when biased)."""
        self._check_fitted()
        q = self.params_["item"].numpy()
        b = self._bias()
        return q if b is None else np.hstack([q, b[:, None]])

    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """Scores ``p_u · q_i + b_i``, shape ``(n_queried, n_items)``, float32 (user
        indices or a :class:`~trustrec.data.query.Query`; histories are not used)."""
        self._check_fitted()
        u = torch.as_tensor(query_users(query))
        with torch.no_grad():
            s = self.params_["user"][u] @ self.params_["item"].T
            b = self._bias()
            if b is not None:
                s += torch.from_numpy(b)
        return s.numpy()

    # ------------------------------------------------------------------ capabilities
    def released_user_table(self) -> np.ndarray:
        """The user factors ``params_["user"]`` ``(n_users, dim)`` (a view; without the
        constant column of :meth:`user_embeddings`)."""
        return self._table_view("user")

    def with_released_user_table(self, table: np.ndarray | torch.Tensor) -> BPR:
        """A copy with the user factors replaced by ``table`` (see ``ReleasesUserTable``)."""
        return self._with_table("user", table)

    def pair_scorer(self, users: torch.Tensor, items: torch.Tensor) -> TableScorer:
        """``table -> (r, k)`` scores ``table[u] · q_i + b_i`` (see ``PairScorer``)."""
        use_bias = self.config.use_bias and "item_bias" in self.params_
        return self._dot_pair_scorer(users, items, "item",
                                     "item_bias" if use_bias else None)

    def training_objective(self, seed: int = 0, n_neg: int | None = None) -> BPRObjective:
        """:class:`BPRObjective` of the fitted model (``n_neg`` hashed negatives per row,
        default 1, drawn with ``seed``)."""
        return BPRObjective(self, seed, n_neg)

    def trained_user_tables(self) -> tuple[str, ...]:
        """The user factors."""
        return ("user",)

    def warm_start_state(self) -> Mapping[str, torch.Tensor]:
        """The fitted ``params_`` (``fit(init=...)`` starts from them)."""
        self._check_fitted()
        return self.params_

    def score_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_embeddings(), item_embeddings())``: ``[p_u, 1] · [q_i, b_i]`` is the
        score."""
        return self.user_embeddings(), self.item_embeddings()
