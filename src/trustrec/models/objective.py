"""What the models' differentiable training objectives share (:class:`Objective`, rows,
hashed negatives).

A model with the :class:`~trustrec.models.capabilities.HasTrainingObjective` capability
writes what it optimises as an :class:`Objective` in its own file and returns it from
``training_objective(seed, n_neg)``. The objective is a torch function of a parameter dict
(the model's ``params_`` layout) and a set of training terms (:class:`Rows`), so that
gradients and Hessian-vector products can be taken with autograd (influence-function and
gradient-ascent unlearning, :mod:`trustrec.unlearn.scif`, :mod:`trustrec.unlearn.finetune`).
Every objective is a *sum* over rows (not a mean) plus data-independent terms:

    L(θ) = Σ_r w_r · ℓ(r; θ) + G(θ)

where a row ``r`` is a (user, item) pair with a label ``y_r`` (1 for a training
interaction; a soft label for the label-corrected rows of an influence update) and a weight
``w_r`` (1, or an inverse sampling probability when a Hessian is estimated from a subset of
rows). ``G`` holds the terms that do not belong to any row (WMF's all-cells part and L2).

Models with sampled negatives draw them by :func:`hashed_negatives`: a fixed, seeded
function of ``(seed, user, item, k)``, so the objective of a row never changes between
calls. Each model's own objective is documented beside the model (``BPRObjective`` in
:mod:`trustrec.models.bpr`, ...).

This module imports nothing from the unlearning methods that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from trustrec.data.dataset import Dataset
from trustrec.seeding import child_seed
from trustrec.train.sampling import positive_lookup

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.models.base import EmbeddingRecommender

Params = Mapping[str, torch.Tensor]


class TableSubset(Protocol):
    """Selected rows of a model's tables viewed as one flat vector (what
    :meth:`Objective.global_loss_of` differentiates; e.g.
    :class:`trustrec.unlearn.influence.ParamSubset`).

    Attributes:
        base: the full tables, detached (name -> tensor).
        users: selected user indices.
        items: selected item indices.
    """

    base: dict[str, torch.Tensor]
    users: torch.Tensor
    items: torch.Tensor

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The flat vector as one ``(n_selected, ...)`` block per table."""
        ...

    def tables(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full tables with the selected rows replaced by ``flat``."""
        ...


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

    A model's file defines its subclass and returns it from the model's
    ``training_objective``. Subclasses set ``user_tables`` / ``item_tables`` (the
    ``params_`` keys whose rows belong to users / items) and implement :meth:`row_loss`
    and :meth:`collaborative_labels`; they may override :meth:`global_loss` and ``n_neg``.

    Attributes:
        model: the fitted model whose objective this is (its config gives the weights).
        seed: seed of the hashed negatives.
    """

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

    def global_loss_of(self, subset: TableSubset) -> Callable[[torch.Tensor], torch.Tensor]:
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


def gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``table[idx]`` for an index tensor of any shape (``(*idx.shape, *row)``)."""
    return table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, *table.shape[1:])


def soft_bce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``−y log σ(x) − (1 − y) log σ(−x) = softplus(−x) + (1 − y) x``, elementwise."""
    return F.softplus(-x) + (1.0 - y) * x


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


def objective_seed(seed: int) -> int:
    """Seed of an unlearner's hashed negatives: ``child_seed(seed, "objective")``."""
    return child_seed(seed, "objective")
