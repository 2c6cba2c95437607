"""NeuMF: neural matrix factorisation (He et al., "Neural Collaborative Filtering", WWW 2017).

Two towers with separate embeddings: GMF, ``φ_G = p^G_u ⊙ q^G_i``, and an MLP over the
concatenation ``[p^M_u, q^M_i]`` (ReLU hidden layers of sizes ``layers``). The score of
(u, i) is the logit ``h · [φ_G, φ_M] + b``. Training minimises binary cross-entropy on
every training pair (label 1) and ``n_neg`` sampled non-interacted items per pair (label
0), with Adam, from scratch (the paper's GMF/MLP pre-training is not done).

Implementation notes:

- The first MLP layer is linear in the concatenation, so ``W [p, q] = W_u p + W_i q``:
  scoring a chunk of users against all items computes ``W_u p`` once per user and
  ``W_i q`` once per item and broadcasts their sum (users × items × ``layers[0]``) through
  the remaining layers, chunked to bound memory. The GMF part is a plain matrix product
  ``p^G (q^G ⊙ h_G)ᵀ``. Training uses the same decomposition.
- Training runs with one torch thread by default (``num_threads``): per-op work is small
  and intra-op parallelism costs more than it saves, badly so on a shared machine.
- Embedding lookups use a small autograd function whose backward is ``index_add_`` into a
  dense gradient: on CPU this is several times faster than ``torch.nn.functional.embedding``'s
  backward and deterministic. Everything else is plain autograd + ``torch.optim.Adam``;
  initialisation draws from a ``torch.Generator`` seeded by the fit's child seed, so the
  same seed gives bitwise-identical parameters *for the same torch thread count*
  (``num_threads``, one by default): with another count torch may split its reductions
  differently, and the weights differ in the last bits.
- Defaults (batch 8,192, lr 0.005 — larger than the paper's 256 / 0.001 for speed) reach
  test NDCG@20 ≈ 0.26 on ML-100K in ~10 epochs, a little below BPR-MF, as Rendle et al.
  (RecSys 2020, "Neural Collaborative Filtering vs. Matrix Factorization Revisited") found.

``params_`` (float32): ``user_gmf``/``item_gmf`` ``(n, gmf_dim)``, ``user_mlp``/``item_mlp``
``(n, mlp_dim)``, ``mlp.{k}.weight`` ``(layers[k], fan_in)`` and ``mlp.{k}.bias``,
``out.weight`` ``(gmf_dim + layers[-1],)`` and ``out.bias`` ``(1,)``. The score is not a
dot product of two embeddings; ``user_embeddings()`` / ``item_embeddings()`` return the
concatenated ``[GMF, MLP]`` embedding tables, width ``gmf_dim + mlp_dim`` (the model's
learned representations of users and items, e.g. for attribute-inference attacks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.models.base import MODELS, AfterEpoch, EmbeddingRecommender
from trustrec.models.capabilities import TableScorer
from trustrec.models.objective import Params, PointwiseObjective, Rows, gather, soft_bce
from trustrec.seeding import child_seed, rng
from trustrec.threads import torch_threads
from trustrec.train.longtail import Stepper, TailOptions
from trustrec.train.loop import train_epochs
from trustrec.train.sampling import sample_negatives

# Upper bound on the (users × items × hidden) activations materialised at once in score().
SCORE_BLOCK_ELEMENTS = 1 << 22


@typed_config
class NeuMFConfig(TailOptions):
    """Hyper-parameters of NeuMF.

    Attributes:
        gmf_dim: embedding dimension of the GMF tower.
        mlp_dim: embedding dimension of the MLP tower (its input is ``2 * mlp_dim``).
        layers: sizes of the MLP's ReLU hidden layers (a tower, e.g. ``(32, 16, 8)``).
        lr: Adam learning rate.
        reg: L2 weight on the embedding rows of each batch (mean over the batch).
        n_neg: sampled negatives per training pair.
        batch_size: (user, item, label) instances per step.
        init_scale: standard deviation of the normal initialisation of the embeddings
            (dense layers use Xavier-uniform weights and zero biases).
        epochs: maximum number of epochs (every training pair once, with fresh negatives).
        patience: validation evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
        num_threads: torch intra-op threads while fitting (restored afterwards; 0 keeps
            torch's setting). The ops are small, so one thread is about as fast on an idle
            machine and up to ~10x faster on a busy one; parameters do not depend on it.

    And the long-tail options of :class:`~trustrec.train.longtail.TailOptions` (EISAM on
    NeuMF): a positive instance's item is its class (its IPS weight, its EISAM share);
    sampled negatives keep weight 1 and the plain loss; the logit adjustment offsets every
    instance's logit by its item's popularity.
    """

    gmf_dim: PositiveInt = 32
    mlp_dim: PositiveInt = 32
    layers: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (32, 16, 8)
    lr: PositiveFloat = 0.005
    reg: NonNegativeFloat = 0.0
    n_neg: PositiveInt = 4
    batch_size: PositiveInt = 8192
    init_scale: NonNegativeFloat = 0.01
    epochs: PositiveInt = 50
    patience: PositiveInt = 3
    eval_every: PositiveInt = 1
    num_threads: NonNegativeInt = 1


class _Gather(torch.autograd.Function):
    """``table[idx]`` whose backward is a deterministic ``index_add_`` (fast on CPU)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]
        return table.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (idx,) = ctx.saved_tensors
        out = grad.new_zeros((ctx.n_rows, grad.shape[1]))
        out.index_add_(0, idx, grad)
        return out, None


def _gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return _Gather.apply(table, idx)


class NeuMFObjective(PointwiseObjective):
    """NeuMF's BCE with hashed negatives, differentiable (:mod:`trustrec.models.objective`).

    Per row ``ℓ = BCE(f(u, i), y) + n_neg · mean_k BCE(f(u, j_k), 0) + reg/2 ·
    ‖embeddings‖²`` with the model's own forward pass ``f`` and hashed negatives (the
    model's loss is the mean of these terms over a batch; as a sum it has the same
    minimiser). Only the embedding tables are differentiated; the MLP stays fixed.
    """

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
            emb = sum(gather(full[t], users).square().sum(1) for t in self.user_tables)
            emb = emb + sum(gather(full[t], items).square().sum(1) for t in self.item_tables)
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


@MODELS.register("neumf")
class NeuMF(EmbeddingRecommender):
    """NeuMF (GMF + MLP towers); score = the logit of the final layer.

    See the module docstring for the parameter layout and implementation choices.

    Capabilities (:mod:`trustrec.models.capabilities`): ``ReleasesUserTable`` (the GMF
    user embeddings ``user_gmf``, as in the PoT-AU companion code, whose NCF attack reads
    the GMF table), ``PairScorer`` (the full forward pass), ``HasTrainingObjective``
    (:class:`NeuMFObjective`), ``WarmStart`` and ``TrainsUserTables``. Its score is
    not a dot product (no ``DotProductScores``).
    """

    parallel_safe = False  # fit sets torch's process-wide thread count
    name = "neumf"
    Config = NeuMFConfig

    # ------------------------------------------------------------------ parameters
    def _n_layers(self) -> int:
        return len(tuple(self.config.layers))

    def _init_params(self, n_users: int, n_items: int, seed: int) -> dict[str, torch.Tensor]:
        cfg: NeuMFConfig = self.config
        gen = torch.Generator().manual_seed(child_seed(seed, "neumf", "init"))

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float32) * cfg.init_scale

        def xavier(fan_out: int, fan_in: int) -> torch.Tensor:
            a = math.sqrt(6.0 / (fan_in + fan_out))
            return (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float32) * 2 - 1) * a

        p = {"user_gmf": normal(n_users, cfg.gmf_dim), "item_gmf": normal(n_items, cfg.gmf_dim),
             "user_mlp": normal(n_users, cfg.mlp_dim), "item_mlp": normal(n_items, cfg.mlp_dim)}
        fan_in = 2 * cfg.mlp_dim
        for k, size in enumerate(cfg.layers):
            p[f"mlp.{k}.weight"] = xavier(size, fan_in)
            p[f"mlp.{k}.bias"] = torch.zeros(size)
            fan_in = size
        p["out.weight"] = xavier(1, cfg.gmf_dim + fan_in).reshape(-1)
        p["out.bias"] = torch.zeros(1)
        return p

    def param_shapes(self, n_users: int, n_items: int) -> dict[str, tuple[int, ...]]:
        """The GMF and MLP tables, each MLP layer's weight and bias, and the output layer."""
        cfg: NeuMFConfig = self.config
        out = {"user_gmf": (n_users, cfg.gmf_dim), "item_gmf": (n_items, cfg.gmf_dim),
               "user_mlp": (n_users, cfg.mlp_dim), "item_mlp": (n_items, cfg.mlp_dim)}
        fan_in = 2 * cfg.mlp_dim
        for k, size in enumerate(cfg.layers):
            out[f"mlp.{k}.weight"], out[f"mlp.{k}.bias"] = (size, fan_in), (size,)
            fan_in = size
        out["out.weight"], out["out.bias"] = (cfg.gmf_dim + fan_in,), (1,)
        return out

    def _tail(self, h: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden layers 1.. of the MLP applied to the (pre-activation) first layer ``h``."""
        h = torch.relu(h)
        for k in range(1, self._n_layers()):
            h = torch.relu(F.linear(h, p[f"mlp.{k}.weight"], p[f"mlp.{k}.bias"]))
        return h

    def _pair_logits(self, users: torch.Tensor, items: torch.Tensor,
                     p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for aligned (user, item) index pairs and the batch's L2 term."""
        d = self.config.mlp_dim
        ug, ig = _gather(p["user_gmf"], users), _gather(p["item_gmf"], items)
        um, im = _gather(p["user_mlp"], users), _gather(p["item_mlp"], items)
        w0 = p["mlp.0.weight"]
        h = um @ w0[:, :d].T + im @ w0[:, d:].T + p["mlp.0.bias"]
        phi = torch.cat([ug * ig, self._tail(h, p)], dim=1)
        l2 = (ug.square().sum() + ig.square().sum() + um.square().sum()
              + im.square().sum()) / len(users)
        return phi @ p["out.weight"] + p["out.bias"], l2

    # ------------------------------------------------------------------ learning
    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        cfg: NeuMFConfig = self.config
        self.params_ = {k: v.requires_grad_() for k, v in
                        self._initial(self._init_params(train.n_users, train.n_items,
                                                        seed), init).items()}
        opt = torch.optim.Adam(list(self.params_.values()), lr=cfg.lr)
        stepper = Stepper.from_config(list(self.params_.values()), opt, train, cfg)
        offset = stepper.logit_offset

        def instance_losses(u: torch.Tensor, i: torch.Tensor, y: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logits, l2 = self._pair_logits(u, i, self.params_)
            if offset is not None:
                logits = logits + offset[i]
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
            target = torch.where(y > 0, i, -1)  # negatives have no target item
            return (loss + 0.5 * cfg.reg * l2 if cfg.reg > 0 else loss), target, u
        users = train.users.astype(np.int64)
        items = train.items.astype(np.int64)
        keys = np.unique(train.pair_keys())
        n = len(users)
        labels_one = np.concatenate([np.ones(1, np.float32), np.zeros(cfg.n_neg, np.float32)])

        def epoch_fn(epoch: int) -> float:
            if n == 0:
                return 0.0
            ep_rng = rng(seed, "neumf", "epoch", epoch)
            neg = sample_negatives(users, keys, train.n_items, ep_rng, n_neg=cfg.n_neg)
            neg = neg.reshape(n, cfg.n_neg)
            inst_u = np.repeat(users, 1 + cfg.n_neg)
            inst_i = np.concatenate([items[:, None], neg], axis=1).reshape(-1)
            inst_y = np.tile(labels_one, n)
            order = ep_rng.permutation(len(inst_u))
            inst_u = torch.from_numpy(inst_u[order])
            inst_i = torch.from_numpy(inst_i[order])
            inst_y = torch.from_numpy(inst_y[order])
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                u = inst_u[start:start + cfg.batch_size]
                i = inst_i[start:start + cfg.batch_size]
                y = inst_y[start:start + cfg.batch_size]
                loss = stepper.step(lambda u=u, i=i, y=y: instance_losses(u, i, y))
                total += loss * len(u)
            return total / len(order)

        with torch_threads(cfg.num_threads):
            train_epochs(self, epoch_fn, epochs=cfg.epochs, train=train, valid=valid,
                         patience=cfg.patience, eval_every=cfg.eval_every,
                         progress=progress, after_epoch=after_epoch, desc="neumf")
        self.params_ = {k: v.detach() for k, v in self.params_.items()}

    # ------------------------------------------------------------------ inference
    def _table(self, side: str) -> np.ndarray:
        self._check_fitted()
        p = self.params_
        return torch.cat([p[f"{side}_gmf"], p[f"{side}_mlp"]], dim=1).detach().numpy()

    def user_embeddings(self) -> np.ndarray:
        """``(n_users, gmf_dim + mlp_dim)``: the GMF and MLP user embeddings, concatenated."""
        return self._table("user")

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, gmf_dim + mlp_dim)``: the GMF and MLP item embeddings, concatenated."""
        return self._table("item")

    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """Logits ``(n_queried, n_items)`` (float32), computed in blocks of users (user
        indices or a :class:`~trustrec.data.query.Query`; histories are not used)."""
        self._check_fitted()
        p = self.params_
        d = self.config.mlp_dim
        u = torch.as_tensor(query_users(query))
        n_items = p["item_gmf"].shape[0]
        out = np.empty((len(u), n_items), dtype=np.float32)
        with torch.no_grad():
            p = {k: v.detach() for k, v in p.items()}
            w0, b0 = p["mlp.0.weight"], p["mlp.0.bias"]
            h_gmf = p["out.weight"][: self.config.gmf_dim]
            h_mlp = p["out.weight"][self.config.gmf_dim:]
            item_gmf = p["item_gmf"] * h_gmf  # GMF part: p_u · (q_i ⊙ h_G)
            item_h = p["item_mlp"] @ w0[:, d:].T + b0  # first MLP layer, item half (+ bias)
            block = max(1, SCORE_BLOCK_ELEMENTS // max(1, n_items * w0.shape[0]))
            for start in range(0, len(u), block):
                ub = u[start:start + block]
                user_h = p["user_mlp"][ub] @ w0[:, :d].T
                h = self._tail(user_h[:, None, :] + item_h[None, :, :], p)
                s = h @ h_mlp + p["user_gmf"][ub] @ item_gmf.T + p["out.bias"]
                out[start:start + len(ub)] = s.numpy()
        return out

    # ------------------------------------------------------------------ capabilities
    def released_user_table(self) -> np.ndarray:
        """The GMF user embeddings ``params_["user_gmf"]`` ``(n_users, gmf_dim)`` (a
        view)."""
        return self._table_view("user_gmf")

    def with_released_user_table(self, table: np.ndarray | torch.Tensor) -> NeuMF:
        """A copy with the GMF user embeddings replaced by ``table`` (see
        ``ReleasesUserTable``)."""
        return self._with_table("user_gmf", table)

    def pair_scorer(self, users: torch.Tensor, items: torch.Tensor) -> TableScorer:
        """``table -> (r, k)`` logits of the full forward pass with ``table`` as the GMF
        user embeddings (see ``PairScorer``)."""
        fixed = {k: v.detach() for k, v in self.params_.items()}
        uu, ii = users.repeat_interleave(items.shape[1]), items.reshape(-1)

        def neumf(table: torch.Tensor) -> torch.Tensor:
            logits, _ = self._pair_logits(uu, ii, {**fixed, "user_gmf": table})
            return logits.reshape(items.shape)
        return neumf

    def training_objective(self, seed: int = 0, n_neg: int | None = None
                           ) -> NeuMFObjective:
        """:class:`NeuMFObjective` of the fitted model (``n_neg`` hashed negatives per row,
        default the model's ``n_neg``, drawn with ``seed``)."""
        return NeuMFObjective(self, seed, n_neg)

    def trained_user_tables(self) -> tuple[str, ...]:
        """The GMF and MLP user embeddings (together, the user's representation)."""
        return ("user_gmf", "user_mlp")

    def warm_start_state(self) -> Mapping[str, torch.Tensor]:
        """The fitted ``params_`` (``fit(init=...)`` starts from them)."""
        self._check_fitted()
        return self.params_
