"""WMF: weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, 2008).

Every (user, item) cell counts: preference ``p_ui = 1`` for observed pairs and 0 elsewhere,
with confidence ``c_ui = 1 + alpha`` for observed pairs and 1 elsewhere. The loss

    Σ_ui c_ui (p_ui − x_u · y_i)² + reg (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)

is minimised by alternating least squares. The user step solves, for every user,
``(YᵀY + alpha · Σ_{i∈I_u} y_i y_iᵀ + reg·I) x_u = (1 + alpha) Σ_{i∈I_u} y_i``; the dense
part ``YᵀY + reg·I`` is computed once per step, so each user costs only ``O(|I_u| d)`` per
matrix-vector product. The systems are solved by a few conjugate-gradient steps warm-started
from the previous factors (Takács, Pilászy & Tikk, 2011), in a numba-compiled loop over
users (single-threaded, fixed order: bitwise reproducible). The item step is symmetric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numba
import numpy as np
import scipy.sparse as sp
import torch

from trustrec.config import NonNegativeFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.models.base import MODELS, AfterEpoch, EmbeddingRecommender, normal_tables
from trustrec.models.capabilities import TableScorer
from trustrec.models.objective import Objective, Params, Rows, TableSubset, gather
from trustrec.seeding import rng
from trustrec.train.loop import train_epochs


@typed_config
class WMFConfig:
    """Hyper-parameters of WMF.

    Attributes:
        dim: latent dimension.
        alpha: confidence of an observed pair is ``1 + alpha`` (unobserved: 1).
        reg: L2 penalty on all user and item factors.
        epochs: maximum number of ALS iterations (a user step and an item step each).
        cg_steps: conjugate-gradient steps per solve (warm-started).
        init_scale: standard deviation of the normal initialisation of the factors.
        patience: validation evaluations without improvement before stopping.
        eval_every: ALS iterations between validation evaluations.
    """

    dim: PositiveInt = 64
    alpha: NonNegativeFloat = 3.0
    reg: NonNegativeFloat = 30.0
    epochs: PositiveInt = 50
    cg_steps: PositiveInt = 3
    init_scale: NonNegativeFloat = 0.01
    patience: PositiveInt = 4
    eval_every: PositiveInt = 1


@numba.njit(cache=True, nogil=True, fastmath=True)
def wmf_cg_step(x_f: np.ndarray, y_f: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                gram: np.ndarray, alpha: float, cg_steps: int) -> None:
    """Update every row of ``x_f`` by ``cg_steps`` conjugate-gradient steps, in place.

    Row ``u`` solves ``(gram + alpha Σ_{i∈I_u} y_i y_iᵀ) x_u = (1 + alpha) Σ_{i∈I_u} y_i``
    where ``I_u`` is ``indices[indptr[u]:indptr[u+1]]`` (a CSR matrix of observed pairs).

    Args:
        x_f: ``(n, d)`` float32 factors to update (warm start).
        y_f: ``(m, d)`` float32 fixed factors of the other side.
        indptr: CSR row pointers, length ``n + 1``.
        indices: CSR column indices into ``y_f``.
        gram: ``(d, d)`` float32 ``y_fᵀ y_f + reg·I``.
        alpha: confidence increment of observed pairs.
        cg_steps: conjugate-gradient steps per row.
    """
    n, d = x_f.shape
    a32 = np.float32(alpha)
    b32 = np.float32(1.0 + alpha)
    r = np.empty(d, dtype=np.float32)
    p = np.empty(d, dtype=np.float32)
    ap = np.empty(d, dtype=np.float32)
    for u in range(n):
        x = x_f[u]
        # residual r = b - A x
        for a in range(d):
            acc = np.float32(0.0)
            for c in range(d):
                acc += gram[a, c] * x[c]
            r[a] = -acc
        for k in range(indptr[u], indptr[u + 1]):
            y = y_f[indices[k]]
            s = np.float32(0.0)
            for c in range(d):
                s += y[c] * x[c]
            w = b32 - a32 * s
            for c in range(d):
                r[c] += w * y[c]
        # every reduction has a loop of its own without stores: a store beside a
        # reduction makes LLVM choose between vector and scalar code by a run-time
        # overlap check of the arrays' addresses, and the two sum in different orders,
        # so the bits of a fit would depend on where its arrays lie in memory
        p[:] = r
        rs = np.float32(0.0)
        for c in range(d):
            rs += r[c] * r[c]
        for _ in range(cg_steps):
            if rs < 1e-20:
                break
            for a in range(d):
                acc = np.float32(0.0)
                for c in range(d):
                    acc += gram[a, c] * p[c]
                ap[a] = acc
            for k in range(indptr[u], indptr[u + 1]):
                y = y_f[indices[k]]
                s = np.float32(0.0)
                for c in range(d):
                    s += y[c] * p[c]
                s *= a32
                for c in range(d):
                    ap[c] += s * y[c]
            pap = np.float32(0.0)
            for c in range(d):
                pap += p[c] * ap[c]
            if pap <= 0:
                break
            step = rs / pap
            for c in range(d):
                x[c] += step * p[c]
                r[c] -= step * ap[c]
            rs_new = np.float32(0.0)
            for c in range(d):
                rs_new += r[c] * r[c]
            beta = rs_new / rs
            for c in range(d):
                p[c] = r[c] + beta * p[c]
            rs = rs_new


@numba.njit(cache=True, nogil=True, fastmath=True)
def wmf_data_loss(x_f: np.ndarray, y_f: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                  gram0: np.ndarray, alpha: float) -> float:
    """``Σ_ui c_ui (p_ui − x_u·y_i)²`` without forming the dense matrix.

    Equals ``Σ_u x_uᵀ (YᵀY) x_u + Σ_{observed} [(1 + alpha)(1 − s)² − s²]`` with
    ``s = x_u · y_i``; ``gram0`` is ``YᵀY`` (no regularisation).
    """
    n, d = x_f.shape
    total = 0.0
    for u in range(n):
        x = x_f[u]
        q = 0.0
        for a in range(d):
            acc = np.float32(0.0)
            for c in range(d):
                acc += gram0[a, c] * x[c]
            q += acc * x[a]
        total += q
        for k in range(indptr[u], indptr[u + 1]):
            y = y_f[indices[k]]
            s = np.float32(0.0)
            for c in range(d):
                s += y[c] * x[c]
            total += (1.0 + alpha) * (1.0 - s) ** 2 - s * s
    return total


@numba.njit(cache=True, nogil=True)
def _gram_kernel(f: np.ndarray, reg: float) -> np.ndarray:
    """``fᵀ f + reg·I`` accumulated in float64 in a fixed order (no BLAS)."""
    n, d = f.shape
    g = np.zeros((d, d), dtype=np.float64)
    for r in range(n):
        for a in range(d):
            fa = np.float64(f[r, a])
            for b in range(a, d):
                g[a, b] += fa * f[r, b]
    for a in range(d):
        g[a, a] += reg
        for b in range(a + 1, d):
            g[b, a] = g[a, b]
    return g.astype(np.float32)


def _gram(f: np.ndarray, reg: float) -> np.ndarray:
    """``fᵀ f + reg·I`` in float32, computed in float64 for accuracy.

    A compiled single-threaded loop rather than ``f.T @ f``: a multi-threaded BLAS may
    split the sum differently from run to run (it depends on the threads it gets), which
    made refits differ in the last bits and broke the bitwise exactness of unlearning.
    """
    return _gram_kernel(np.ascontiguousarray(f, dtype=np.float32), float(reg))


class WMFObjective(Objective):
    """WMF's whole-data weighted squared loss in Gram form, differentiable
    (:mod:`trustrec.models.objective`).

    ``Σ_ui c_ui (p_ui − x_u·y_i)² + reg (‖X‖² + ‖Y‖²)`` over *all* cells, written as the
    global term ``G = tr(XᵀX · YᵀY) + reg (‖X‖² + ‖Y‖²)`` plus, per observed row,
    ``ℓ = c (p − s)² − s²`` with ``s = x_u·y_i``, ``p = y`` and ``c = 1 + alpha·y`` (Hu et
    al.'s confidence of an observation of strength y). The ``users × items`` matrix is
    never formed.
    """

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
        s = (gather(params["user"], rows.users) * gather(params["item"], rows.items)).sum(1)
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

    def global_loss_of(self, subset: TableSubset) -> Callable[[torch.Tensor], torch.Tensor]:
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


@MODELS.register("wmf")
class WMF(EmbeddingRecommender):
    """Weighted matrix factorisation by ALS; score = ``x_u · y_i``.

    ``params_``: ``user`` ``(n_users, dim)`` and ``item`` ``(n_items, dim)`` float32.

    Capabilities (:mod:`trustrec.models.capabilities`): ``ReleasesUserTable`` (``user``),
    ``PairScorer``, ``HasTrainingObjective`` (:class:`WMFObjective`), ``WarmStart`` and
    ``DotProductScores``. Not ``TrainsUserTables``: each epoch's user solve is exact
    given the item factors (conjugate gradient), so a change made between epochs is
    erased by the next one; a pull on WMF belongs inside that solve.
    """

    name = "wmf"
    Config = WMFConfig

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg: WMFConfig = self.config
        gen = rng(seed, "wmf", "init")
        self.params_ = self._initial(normal_tables(gen, train.n_users, train.n_items,
                                                   cfg.dim, cfg.init_scale), init)
        ui = train.to_csr()
        ui.sort_indices()
        iu = sp.csr_matrix(ui.T)
        iu.sort_indices()
        ui_ptr, ui_idx = ui.indptr.astype(np.int64), ui.indices.astype(np.int64)
        iu_ptr, iu_idx = iu.indptr.astype(np.int64), iu.indices.astype(np.int64)
        n_cells = max(train.n_users * train.n_items, 1)

        eye = np.eye(cfg.dim, dtype=np.float32) * np.float32(cfg.reg)
        item_gram: list[np.ndarray] = []  # YᵀY after the last item step (reused once)

        def epoch_fn(epoch: int) -> float:
            x_f = self.params_["user"].numpy()
            y_f = self.params_["item"].numpy()
            gy = item_gram.pop() if item_gram else _gram(y_f, 0.0)
            wmf_cg_step(x_f, y_f, ui_ptr, ui_idx, gy + eye, cfg.alpha, cfg.cg_steps)
            wmf_cg_step(y_f, x_f, iu_ptr, iu_idx, _gram(x_f, cfg.reg), cfg.alpha, cfg.cg_steps)
            gy = _gram(y_f, 0.0)
            item_gram.append(gy)
            data = wmf_data_loss(x_f, y_f, ui_ptr, ui_idx, gy, cfg.alpha)
            penalty = cfg.reg * (float(np.square(x_f, dtype=np.float64).sum())
                                 + float(np.square(y_f, dtype=np.float64).sum()))
            return (data + penalty) / n_cells

        train_epochs(self, epoch_fn, epochs=cfg.epochs, train=train, valid=valid,
                     patience=cfg.patience, eval_every=cfg.eval_every, progress=progress,
                     after_epoch=after_epoch, desc="wmf")

    # ------------------------------------------------------------------ capabilities
    def released_user_table(self) -> np.ndarray:
        """The user factors ``params_["user"]`` ``(n_users, dim)`` (a view)."""
        return self._table_view("user")

    def with_released_user_table(self, table: np.ndarray | torch.Tensor) -> WMF:
        """A copy with the user factors replaced by ``table`` (see ``ReleasesUserTable``)."""
        return self._with_table("user", table)

    def pair_scorer(self, users: torch.Tensor, items: torch.Tensor) -> TableScorer:
        """``table -> (r, k)`` scores ``table[u] · y_i`` (see ``PairScorer``)."""
        return self._dot_pair_scorer(users, items, "item")

    def training_objective(self, seed: int = 0, n_neg: int | None = None) -> WMFObjective:
        """:class:`WMFObjective` of the fitted model (no sampled negatives: ``seed`` and
        ``n_neg`` do not change it)."""
        return WMFObjective(self, seed, n_neg)

    def warm_start_state(self) -> Mapping[str, torch.Tensor]:
        """The fitted ``params_`` (``fit(init=...)`` starts from them)."""
        self._check_fitted()
        return self.params_

    def score_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_embeddings(), item_embeddings())``, whose product is the score."""
        return self.user_embeddings(), self.item_embeddings()
