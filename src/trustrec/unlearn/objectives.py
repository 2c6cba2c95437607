"""Differentiable training objectives of the models, for influence functions and NegGrad.

An :class:`Objective` writes what a model optimises as a torch function of a parameter dict
(the model's ``params_`` layout) and a set of training terms (:class:`Rows`), so that
gradients and Hessian-vector products can be taken with autograd. Every objective is a
*sum* over rows (not a mean) plus data-independent terms:

    L(θ) = Σ_r w_r · ℓ(r; θ) + G(θ)

where a row ``r`` is a (user, item) pair with a label ``y_r`` (1 for a training
interaction; a soft label for the label-corrected rows of an influence update) and a weight
``w_r`` (1, or an inverse sampling probability when a Hessian is estimated from a subset of
rows). ``G`` holds the terms that do not belong to any row (WMF's all-cells part and L2).

* ``bpr``: ``ℓ = mean_k BCE(x_{u,i,j_k}, y) + reg/2 (‖p_u‖² + ‖q_i‖² + mean_k ‖q_{j_k}‖²)
  + bias_reg/2 (b_i² + mean_k b_{j_k}²)`` with ``x_uij = p_u·(q_i − q_j) + b_i − b_j`` and
  ``BCE(x, y) = softplus(−x) + (1 − y)·x`` (for ``y = 1`` BPR's ``−log σ(x)``). The L2 terms
  are attached to rows because BPR's SGD decays the rows each update touches. The
  negatives ``j_k`` are a fixed, seeded function of ``(seed, user, item, k)``
  (:func:`hashed_negatives`), so the objective of a row never changes between calls.
* ``wmf``: ``Σ_ui c_ui (p_ui − x_u·y_i)² + reg (‖X‖² + ‖Y‖²)`` over *all* cells, written in
  the Gram form ``G = tr(XᵀX · YᵀY) + reg (‖X‖² + ‖Y‖²)`` plus, per observed row,
  ``ℓ = c (p − s)² − s²`` with ``s = x_u·y_i``, ``p = y`` and ``c = 1 + alpha·y`` (Hu et
  al.'s confidence of an observation of strength y). The ``users × items`` matrix is never
  formed.
* ``bcemf``: ``ℓ = BCE(p_u·q_i, y) + n_neg · mean_k BCE(p_u·q_{j_k}, 0)`` with hashed
  negatives, no L2 (the model has none).
* ``neumf``: ``ℓ = BCE(f(u, i), y) + n_neg · mean_k BCE(f(u, j_k), 0) + reg/2 ·
  ‖embeddings‖²`` with the model's own forward pass ``f`` and hashed negatives (the
  model's loss is the mean of these terms over a batch; as a sum it has the same
  minimiser).

Objectives are registered by model name in :data:`OBJECTIVES`; :func:`make_objective`
builds one for a fitted model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.registry import Registry
from trustrec.seeding import child_seed
from trustrec.train.sampling import positive_lookup

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.models.base import EmbeddingRecommender
    from trustrec.unlearn.influence import ParamSubset

Params = Mapping[str, torch.Tensor]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of a uint64 array (a good, fast integer hash; wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def hashed_negatives(users: np.ndarray, items: np.ndarray, n_items: int,
                     positive_keys: np.ndarray, seed: int, n_neg: int = 1,
                     max_rounds: int = 64) -> np.ndarray:
    """``n_neg`` items per (user, item) row that the user has not interacted with.

    Negative ``k`` of a row is a fixed function of ``(seed, user, item, k)``: candidates
    ``hash(seed, key, k, round) mod n_items`` are drawn for rounds 0, 1, ... until one is
    neither a positive of the user (``positive_keys``) nor the row's own item. The same row
    therefore gets the same negatives in every call, whatever the other rows are, unless a
    positive of its user is added or removed. Vectorised over rows; only the rejected rows
    are re-drawn.

    Args:
        users: user index per row.
        items: item index per row.
        n_items: catalogue size.
        positive_keys: sorted int64 keys ``user * n_items + item`` of the positives.
        seed: seed of the draw.
        n_neg: negatives per row.
        max_rounds: cap on re-draw rounds (a row still rejected keeps its last draw, which
            needs a user holding nearly the whole catalogue).

    Returns:
        int64 array ``(len(users), n_neg)``.
    """
    u = np.asarray(users, dtype=np.int64)
    it = np.asarray(items, dtype=np.int64)
    n = len(u)
    out = np.zeros((n, n_neg), dtype=np.int64)
    if n == 0 or n_items <= 0:
        return out
    keys = np.asarray(positive_keys, dtype=np.int64)
    top = int(keys[-1]) + 1 if len(keys) else 0
    is_positive = positive_lookup(keys, max(top, (int(u.max()) + 1) * n_items))
    salt = _splitmix64(np.array([child_seed(seed, "negatives")], dtype=np.uint64))[0]
    base = _splitmix64((u * n_items + it).astype(np.uint64) ^ salt)
    rows = np.repeat(np.arange(n), n_neg)
    ks = np.tile(np.arange(n_neg, dtype=np.uint64), n)
    h = _splitmix64(base[rows] + ks * np.uint64(0x632BE59BD9B4E019))
    todo = np.arange(len(rows))
    flat = np.empty(len(rows), dtype=np.int64)
    for r in range(max_rounds):
        cand = (_splitmix64(h[todo] + np.uint64(r)) % np.uint64(n_items)).astype(np.int64)
        flat[todo] = cand
        tu = u[rows[todo]]
        bad = is_positive(tu * n_items + cand) | (cand == it[rows[todo]])
        todo = todo[bad]
        if not len(todo):
            break
    return flat.reshape(n, n_neg)


def sorted_keys(data: Dataset) -> np.ndarray:
    """Sorted, de-duplicated int64 pair keys ``user * n_items + item`` of ``data``."""
    k = np.sort(data.pair_keys())
    return k[np.concatenate([[True], k[1:] != k[:-1]])] if len(k) else k


@dataclass(frozen=True)
class Rows:
    """Terms of an objective: (user, item) rows with labels, weights and model extras.

    Attributes:
        users: int64 user index per row.
        items: int64 item index per row.
        labels: float32 label per row (1 for a training interaction).
        weights: float32 weight per row.
        negatives: int64 ``(n, n_neg)`` sampled negatives per row (objectives with sampled
            negatives), else None.
    """

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    negatives: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, idx: np.ndarray | torch.Tensor) -> Rows:
        """The rows at positions ``idx`` (int indices or a boolean mask)."""
        idx = torch.as_tensor(np.asarray(idx))
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).reshape(-1)
        return Rows(self.users[idx], self.items[idx], self.labels[idx], self.weights[idx],
                    None if self.negatives is None else self.negatives[idx])

    def reweighted(self, weights: np.ndarray | torch.Tensor) -> Rows:
        """The same rows with new weights."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        return Rows(self.users, self.items, self.labels, w, self.negatives)

    def user_nodes(self) -> np.ndarray:
        """The user index of each row (numpy)."""
        return self.users.numpy()

    def item_nodes(self) -> np.ndarray:
        """``(n, 1 + n_neg)`` item indices each row's terms depend on (item, negatives)."""
        it = self.items.numpy()[:, None]
        if self.negatives is None:
            return it
        return np.concatenate([it, self.negatives.numpy()], axis=1)

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """Rows of several sets, in order (all with or all without negatives)."""
        negs = [p.negatives for p in parts]
        return Rows(torch.cat([p.users for p in parts]), torch.cat([p.items for p in parts]),
                    torch.cat([p.labels for p in parts]), torch.cat([p.weights for p in parts]),
                    None if negs[0] is None else torch.cat(negs))


class Objective:
    """A model's training objective as a differentiable function (see the module docstring).

    Subclasses set ``model_name``, ``user_tables`` / ``item_tables`` (the ``params_`` keys
    whose rows belong to users / items) and implement :meth:`row_loss`; they may override
    :meth:`global_loss` and ``n_neg``.

    Attributes:
        model: the fitted model whose objective this is (its config gives the weights).
        seed: seed of the hashed negatives.
    """

    model_name: ClassVar[str] = ""
    user_tables: tuple[str, ...] = ("user",)
    item_tables: tuple[str, ...] = ("item",)
    n_neg: int = 0
    #: True when :meth:`global_loss` depends on every table row (every user-item cell is
    #: a term, as in WMF): then no parameter is left without a term by removing rows.
    dense: ClassVar[bool] = False

    def __init__(self, model: EmbeddingRecommender, seed: int = 0,
                 n_neg: int | None = None) -> None:
        self.model = model
        self.seed = int(seed)
        if n_neg is not None and self.n_neg:
            self.n_neg = int(n_neg)

    # ------------------------------------------------------------------ rows
    def rows(self, data: Dataset, positive_keys: np.ndarray | None = None,
             labels: np.ndarray | None = None, n_neg: int | None = None,
             negatives: np.ndarray | None = None) -> Rows:
        """The terms of ``data``'s rows (labels 1 unless given; weights 1).

        Args:
            data: the (user, item) rows.
            positive_keys: sorted keys of the interactions negatives must avoid
                (:func:`sorted_keys`; default ``data``'s own).
            labels: a label per row (default 1).
            n_neg: negatives per row (default ``self.n_neg``). Fewer negatives give an
                unbiased but noisier estimate of the same objective: negative ``k`` of a
                row does not depend on how many are drawn.
            negatives: ``(n, k)`` negatives already drawn by :func:`hashed_negatives` for
                these rows and positives (a cache), instead of drawing them.
        """
        users = data.users.astype(np.int64)
        items = data.items.astype(np.int64)
        lab = (np.ones(len(users), np.float32) if labels is None
               else np.asarray(labels, dtype=np.float32))
        negs = None
        if self.n_neg and negatives is not None:
            negs = torch.from_numpy(np.asarray(negatives, dtype=np.int64).reshape(len(users), -1))
        elif self.n_neg:
            keys = sorted_keys(data) if positive_keys is None else positive_keys
            k = self.n_neg if n_neg is None else max(1, int(n_neg))
            negs = torch.from_numpy(hashed_negatives(users, items, data.n_items, keys,
                                                     self.seed, k))
        return Rows(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(lab),
                    torch.ones(len(users), dtype=torch.float32), negs)

    def collaborative_labels(self, removed: Dataset, remaining: Dataset) -> np.ndarray:
        """SCIF's corrected label of each removed row: its user's mean label over the
        retained data (the item's when the user has none left); see the subclasses."""
        raise NotImplementedError

    # ------------------------------------------------------------------ loss
    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r ℓ(r)`` (with the L2 terms attached to rows when ``regularize``)."""
        raise NotImplementedError

    def global_loss(self, params: Params) -> torch.Tensor:
        """Terms that belong to no row (zero unless the model has some)."""
        return torch.zeros((), dtype=torch.float32)

    def global_loss_of(self, subset: ParamSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`global_loss` as a function of ``subset``'s flat parameters (the other rows
        fixed); only its derivatives matter, so constant terms may be dropped."""
        return lambda theta: self.global_loss(subset.tables(theta))

    def l2_counts(self, rows: Rows, n_users: int, n_items: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """How often each user and item row's L2 term occurs in ``rows`` (weighted).

        ``row_loss(regularize=True) − row_loss(regularize=False)`` equals
        :meth:`node_l2` of these counts, so the L2 part of many rows can be summed exactly
        per node while their data terms are estimated from a sample.
        """
        return np.zeros(n_users), np.zeros(n_items)

    def node_l2(self, params: Params, user_counts: np.ndarray,
                item_counts: np.ndarray) -> torch.Tensor:
        """The row-attached L2 terms summed per node with the given counts."""
        return torch.zeros((), dtype=torch.float32)

    def shrunk_tables(self) -> frozenset[str]:
        """The tables with a positive L2 weight (the objective pulls them towards 0)."""
        return frozenset()

    def loss(self, params: Params, rows: Rows) -> torch.Tensor:
        """The whole objective ``Σ_r w_r ℓ(r) + G``."""
        return self.row_loss(params, rows) + self.global_loss(params)

    @property
    def tables(self) -> tuple[str, ...]:
        """Every parameter table the objective differentiates (user tables, then items)."""
        return self.user_tables + self.item_tables

    def params(self) -> dict[str, torch.Tensor]:
        """Detached copies of the model's tables that this objective uses."""
        return {k: self.model.params_[k].detach().clone() for k in self.tables}


OBJECTIVES: Registry[type[Objective]] = Registry("differentiable objective")


def supported_models() -> list[str]:
    """Names of the models with a registered objective."""
    return OBJECTIVES.names()


def check_supported(model: str, method: str) -> None:
    """Raise ConfigError unless ``model`` has a differentiable objective.

    Args:
        model: registered model name.
        method: the unlearning method asking (for the message).
    """
    if model not in OBJECTIVES:
        raise ConfigError(f"method {method} needs a model with a differentiable objective: "
                          f"{', '.join(supported_models())}; got {model!r}")


def objective_seed(seed: int) -> int:
    """Seed of an unlearner's hashed negatives: ``child_seed(seed, "objective")``."""
    return child_seed(seed, "objective")


def make_objective(model: EmbeddingRecommender, seed: int = 0,
                   n_neg: int | None = None) -> Objective:
    """The objective of a fitted model (its config gives every weight).

    Args:
        model: a fitted registered model.
        seed: seed of the hashed negatives.
        n_neg: negatives per row for objectives with sampled negatives (None: the
            objective's default); more negatives average the sampled part better.
    """
    check_supported(model.name, "(objective)")
    return OBJECTIVES.get(model.name)(model, seed, n_neg)


def _gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, *table.shape[1:])


def soft_bce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``−y log σ(x) − (1 − y) log σ(−x) = softplus(−x) + (1 − y) x``, elementwise."""
    return F.softplus(-x) + (1.0 - y) * x


@OBJECTIVES.register("bpr")
class BPRObjective(Objective):
    """BPR-MF's objective (see the module docstring); ``n_neg`` hashed negatives per row."""

    model_name = "bpr"
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
        pu = _gather(p, rows.users)                    # (n, d)
        qi = _gather(q, rows.items)                    # (n, d)
        qj = _gather(q, rows.negatives)                # (n, k, d)
        # elementwise product and sum: einsum lowers this to a batched matmul of tiny
        # matrices, several times slower (forward and backward) on a CPU
        x = (pu.unsqueeze(1) * (qi.unsqueeze(1) - qj)).sum(2)
        if self.use_bias:
            b = params["item_bias"]
            bi, bj = _gather(b, rows.items), _gather(b, rows.negatives)
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


@OBJECTIVES.register("wmf")
class WMFObjective(Objective):
    """WMF's whole-data weighted squared loss in Gram form (see the module docstring)."""

    model_name = "wmf"
    dense = True

    def collaborative_labels(self, removed: Dataset, remaining: Dataset) -> np.ndarray:
        """The user's mean preference over its retained cells, ``|I_u| / n_items``.

        WMF's data are all cells (1 observed, 0 otherwise), so a user's mean label over the
        retained data is the share of the catalogue it still has; a user with no retained
        row gets the item's ``|U_i| / n_users`` instead, and 0 when both are empty. The
        corrected cell has ``p = ȳ`` and confidence ``1 + alpha·ȳ``.
        """
        u_mean = remaining.user_counts() / max(remaining.n_items, 1)
        i_mean = remaining.item_counts() / max(remaining.n_users, 1)
        ru, ri = removed.users, removed.items
        return np.where(u_mean[ru] > 0, u_mean[ru], i_mean[ri]).astype(np.float32)

    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r [c_r (y_r − s_r)² − s_r²]``, ``c_r = 1 + alpha y_r`` (no L2 per row)."""
        alpha = float(self.model.config.alpha)
        s = (_gather(params["user"], rows.users) * _gather(params["item"], rows.items)).sum(1)
        y = rows.labels
        c = 1.0 + alpha * y
        return (rows.weights * (c * (y - s).square() - s.square())).sum()

    def shrunk_tables(self) -> frozenset[str]:
        """Both tables (the all-cells loss pulls a row without data to 0 even at reg 0)."""
        return frozenset({"user", "item"})

    def global_loss(self, params: Params) -> torch.Tensor:
        """``tr(XᵀX · YᵀY) + reg (‖X‖² + ‖Y‖²)``: every cell's ``(x_u·y_i)²`` plus L2."""
        x, y = params["user"], params["item"]
        reg = float(self.model.config.reg)
        return ((x.T @ x) * (y.T @ y)).sum() + reg * (x.square().sum() + y.square().sum())

    def global_loss_of(self, subset: ParamSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        """``tr((X_SᵀX_S + C_X)(Y_SᵀY_S + C_Y)) + reg (‖X_S‖² + ‖Y_S‖²)``.

        ``C_X``, ``C_Y`` are the Grams of the fixed (unselected) rows, computed once: a
        product then costs ``O(|S| d²)`` instead of ``O((n_users + n_items) d²)``.
        """
        reg = float(self.model.config.reg)
        fixed = {}
        for name, idx in (("user", subset.users), ("item", subset.items)):
            keep = torch.ones(subset.base[name].shape[0], dtype=torch.bool)
            keep[idx] = False
            rest = subset.base[name][keep].double()
            fixed[name] = (rest.T @ rest).to(subset.base[name].dtype)

        def loss(theta: torch.Tensor) -> torch.Tensor:
            blocks = subset.split(theta)
            x, y = blocks["user"], blocks["item"]
            gx, gy = x.T @ x + fixed["user"], y.T @ y + fixed["item"]
            return (gx * gy).sum() + reg * (x.square().sum() + y.square().sum())
        return loss


def pointwise_collaborative_labels(removed: Dataset, remaining: Dataset,
                                   n_neg: int) -> np.ndarray:
    """SCIF's label of each removed row for a pointwise model with ``n_neg`` negatives.

    Each retained positive of a user comes with ``n_neg`` negatives, so a user's mean
    label is ``1 / (1 + n_neg)``. A user with no retained row gets its item's mean:
    ``n_i / (n_i + n_neg · N / n_items)`` (its positives against the expected number of
    times it is drawn as a negative among the N retained rows), 0 for an item without
    positives.
    """
    u_has = remaining.user_counts() > 0
    n_i = remaining.item_counts().astype(np.float64)
    expected_neg = n_neg * remaining.n_interactions / max(remaining.n_items, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        i_mean = np.where(n_i > 0, n_i / (n_i + expected_neg), 0.0)
    ru, ri = removed.users, removed.items
    return np.where(u_has[ru], 1.0 / (1 + n_neg), i_mean[ri]).astype(np.float32)


class PointwiseObjective(Objective):
    """Base of the pointwise BCE objectives with the model's ``n_neg`` sampled negatives
    (hashed; a different count may be asked for) and SCIF's pointwise relabelling."""

    def __init__(self, model: EmbeddingRecommender, seed: int = 0,
                 n_neg: int | None = None) -> None:
        super().__init__(model, seed)
        self.n_neg = int(model.config.n_neg if n_neg is None else n_neg)

    def collaborative_labels(self, removed: Dataset, remaining: Dataset) -> np.ndarray:
        """:func:`pointwise_collaborative_labels` with the model's ``n_neg``."""
        return pointwise_collaborative_labels(removed, remaining, int(self.model.config.n_neg))


@OBJECTIVES.register("bcemf")
class BCEMFObjective(PointwiseObjective):
    """BCE-MF's pointwise BCE with hashed negatives, no L2 (CURE4Rec's "WMF")."""

    model_name = "bcemf"

    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r [BCE(p_u·q_i, y) + n_neg·mean_k BCE(p_u·q_{j_k}, 0)]``."""
        pu = _gather(params["user"], rows.users)                       # (n, d)
        qi = _gather(params["item"], rows.items)                       # (n, d)
        qj = _gather(params["item"], rows.negatives)                   # (n, k, d)
        pos = soft_bce((pu * qi).sum(1), rows.labels)
        neg = soft_bce((pu.unsqueeze(1) * qj).sum(2), torch.zeros(()))
        weight = float(self.model.config.n_neg) / max(rows.negatives.shape[1], 1)
        return (rows.weights * (pos + weight * neg.sum(1))).sum()


@OBJECTIVES.register("neumf")
class NeuMFObjective(PointwiseObjective):
    """NeuMF's BCE with hashed negatives; only the embedding tables are differentiated."""

    model_name = "neumf"
    user_tables = ("user_gmf", "user_mlp")
    item_tables = ("item_gmf", "item_mlp")

    def row_loss(self, params: Params, rows: Rows, *, regularize: bool = True) -> torch.Tensor:
        """``Σ_r w_r [BCE(f(u,i), y) + n_neg·mean_k BCE(f(u,j_k), 0) + L2 of embeddings]``."""
        model = self.model
        full = {**{k: v.detach() for k, v in model.params_.items()}, **params}
        n, k = len(rows), rows.negatives.shape[1]
        users = rows.users.repeat_interleave(1 + k)
        items = torch.cat([rows.items[:, None], rows.negatives], dim=1).reshape(-1)
        labels = torch.cat([rows.labels[:, None], torch.zeros(n, k)], dim=1).reshape(-1)
        logits, _ = model._pair_logits(users, items, full)
        per = soft_bce(logits, labels)
        if regularize and model.config.reg:
            emb = sum(_gather(full[t], users).square().sum(1) for t in self.user_tables)
            emb = emb + sum(_gather(full[t], items).square().sum(1) for t in self.item_tables)
            per = per + 0.5 * float(model.config.reg) * emb
        per = per.reshape(n, 1 + k)
        # the model draws n_neg negatives per positive: K negatives given here stand for
        # them with weight n_neg / K each (any K is an unbiased estimate of the same sum)
        neg_weight = float(model.config.n_neg) / max(k, 1)
        return (rows.weights * (per[:, 0] + neg_weight * per[:, 1:].sum(1))).sum()

    def shrunk_tables(self) -> frozenset[str]:
        """The embedding tables when ``reg > 0``."""
        return frozenset(self.tables) if self.model.config.reg > 0 else frozenset()

    def l2_counts(self, rows: Rows, n_users: int, n_items: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The user once per instance (1 + n_neg per row), the item once, each of the k
        negatives ``n_neg / k`` times."""
        w = rows.weights.numpy().astype(np.float64)
        n_neg = float(self.model.config.n_neg)
        negs = rows.negatives.numpy()
        uc = np.bincount(rows.users.numpy(), weights=w * (1 + n_neg), minlength=n_users)
        ic = np.bincount(rows.items.numpy(), weights=w, minlength=n_items)
        ic += np.bincount(negs.reshape(-1),
                          weights=np.repeat(w * n_neg / negs.shape[1], negs.shape[1]),
                          minlength=n_items)
        return uc, ic

    def node_l2(self, params: Params, user_counts: np.ndarray,
                item_counts: np.ndarray) -> torch.Tensor:
        """``reg/2 Σ_v c_v ‖[gmf_v, mlp_v]‖²`` over users and items."""
        reg = float(self.model.config.reg)
        if not reg:
            return torch.zeros((), dtype=torch.float32)
        uc = torch.as_tensor(user_counts, dtype=torch.float32)
        ic = torch.as_tensor(item_counts, dtype=torch.float32)
        out = sum((uc * params[t].square().sum(1)).sum() for t in self.user_tables)
        out = out + sum((ic * params[t].square().sum(1)).sum() for t in self.item_tables)
        return 0.5 * reg * out
