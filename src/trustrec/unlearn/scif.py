"""SCIF: selective and collaborative influence-function unlearning (Li et al., arXiv 2304.10199).

Forgetting without retraining: the model's parameters take one Newton-type step from the
objective with the forgotten rows (``L_old``) to the objective without them (``L_new``),
restricted to a subset ``S`` of the parameters:

    θ_S ← θ_S − (H_S + λI)⁻¹ g,   g = ∇_S (L_new − L_old)(θ),   H_S = ∇²_S L_new(θ)

This is the paper's ``θ_S + (1/n) H_S⁻¹ g`` written for an objective that is a sum over
rows instead of a mean (the ``1/n`` cancels). ``L_new − L_old`` involves only the changed
terms, so ``g`` costs a pass over the forgotten rows.

* **Selective**: ``S`` holds the rows of the user and item tables that the changed terms
  touch (the forgotten rows' users and items, and for BPR / NeuMF their sampled negatives);
  nothing else moves.
* **Collaborative** (``collaborative=True``): a forgotten row is not only dropped but
  relabelled with ``ȳ``, the mean label of its user over the retained data (its item's
  when the user has none left). How ``ȳ`` maps onto each model is documented in
  :meth:`trustrec.models.objective.Objective.collaborative_labels` (BPR: ½ on the
  pairwise comparison; WMF: the user's share of the catalogue, a fractional cell).
* **Solver**: conjugate gradients (default) or LiSSA on Hessian-vector products by double
  backward, diagonally preconditioned by per-node curvature estimates
  (:mod:`trustrec.unlearn.influence`); the Hessian is never formed.

Speed: a forget costs a pass over the forgotten rows (``g``), one over the remaining rows'
indices (selection and sampling, no arithmetic) and ``iterations + probes (+1)``
Hessian-vector products on a node-balanced sample of ``hessian_rows`` rows, independent of
the data size. At MovieLens-1M scale (6,040 × 3,706, 800k training rows; 5 % of the users)
that is 0.2–0.4 s once torch is warm (the first call in a process adds ~0.3 s), against
7–11 s for retraining BPR-MF and 2.6–5.3 s for WMF (which early-stops after 5–10 ALS
iterations on that data).

:class:`InfluenceUnlearner` holds everything but the choice of ``S``; SCIF and IFRU
(:mod:`trustrec.unlearn.ifru`) differ only in :meth:`InfluenceUnlearner._select`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.models.capabilities import HasTrainingObjective
from trustrec.models.objective import (
    Objective,
    Rows,
    hashed_negatives,
    objective_seed,
    sorted_keys,
)
from trustrec.seeding import child_seed, rng
from trustrec.threads import torch_threads
from trustrec.unlearn.base import UNLEARNERS
from trustrec.unlearn.influence import (
    HessianVectorProduct,
    LossPart,
    ParamSubset,
    Solution,
    conjugate_gradient,
    gradient,
    lissa,
    node_preconditioner,
)
from trustrec.unlearn.retrain import Retrain

Solver = Literal["cg", "lissa"]
Hessian = Literal["block", "full"]
Step = Literal["hybrid", "newton", "influence"]


@typed_config
class InfluenceConfig:
    """Options shared by the influence-function methods.

    Attributes:
        solver: ``"cg"`` (conjugate gradients) or ``"lissa"``.
        step: how ``g`` treats the model's distance from a minimum of ``L_old``:
            ``"influence"`` (default): ``g = ∇_S (L_new − L_old)(θ)``, the classical
            influence function, which assumes ``∇L_old(θ) = 0``: every selected node,
            forgotten users included, is *moved* by the influence step; ``"newton"``:
            ``g = ∇_S L_new(θ)``, a Newton step on the new objective (SCIF's ``g`` with its
            ``n ∇L_train`` term); ``"hybrid"``: Newton for the users and items that have no
            training row left (they are re-fitted to what remains of their terms, which
            without collaborative rows is a hard reset to 0), the influence function for
            the others (see :class:`InfluenceUnlearner`).
        hessian: ``"block"``: the Hessian's user block and item block, without the
            user–item cross-curvature (each block is positive semi-definite for BPR and
            WMF, whose scores are linear in either side); ``"full"``: the whole ``H_S``,
            which is indefinite away from a minimum (see :class:`InfluenceUnlearner`).
        iterations: maximum solver iterations (one Hessian-vector product each); the
            default is a cap that the tolerance is met well within on MovieLens-100K
            (17–25 CG iterations), so the step is the solved one, not a truncated one.
        tol: stop when the relative residual ``‖b − (H + λI)x‖ / ‖b‖`` is below this; the
            residual reached and the stopping cause are in every forget report.
        damping: ``λ`` added to the Hessian's diagonal, in the objective's units (a sum
            over rows); see :mod:`trustrec.unlearn.influence`.
        scale: LiSSA's scale ``s`` (None: 1.2 × the estimated largest eigenvalue).
        collaborative: relabel forgotten rows with the user's / item's mean label over the
            retained data (SCIF's collaborative correction, on by default as in the paper)
            instead of only dropping them.
        precondition: use the per-node diagonal preconditioner.
        probes: Hutchinson probes of the preconditioner (one HVP each).
        negatives: sampled negatives per forgotten row in ``g`` for BPR / NeuMF (0: the
            objective's default, 1 for BPR, the model's ``n_neg`` for NeuMF); the Hessian's
            rows use one each.
        hessian_rows: when > 0, estimate the Hessian from about this many of the rows
            touching the selected parameters (node-balanced sampling with inverse-probability
            weights; the corrected rows are always kept); 0 uses every row. This bounds the
            cost of a forget independently of the data size.
        chunk_rows: rows per part of the Hessian-vector product (cache-sized parts are
            faster on a CPU).
        num_threads: torch threads during ``forget`` (0 keeps torch's setting).
    """

    solver: Solver = "cg"
    step: Step = "influence"
    hessian: Hessian = "block"
    iterations: PositiveInt = 100
    tol: PositiveFloat = 1e-3
    damping: NonNegativeFloat = 2.0
    scale: PositiveFloat | None = None
    collaborative: bool = True
    precondition: bool = True
    probes: PositiveInt = 1
    negatives: NonNegativeInt = 2
    hessian_rows: NonNegativeInt = 10000
    chunk_rows: PositiveInt = 32768
    num_threads: NonNegativeInt = 1


@typed_config
class SCIFConfig(InfluenceConfig):
    """SCIF's options (those of :class:`InfluenceConfig`; SCIF never spills over)."""


class InfluenceUnlearner(Retrain):
    """Base of influence-function unlearning: one model, updated by one Newton-type step.

    ``fit`` trains the model normally (seed ``child_seed(seed, "model")``, like
    :class:`~trustrec.unlearn.retrain.Retrain`, which also supplies scoring and
    persistence); ``forget`` builds the changed terms of the objective, selects the
    parameters to update (:meth:`_select`, the subclass's choice), solves for the step and
    commits the new parameters only at the end.

    Defaults follow the paper: collaborative relabelling on, the classical influence step
    for every selected node (forgotten users are moved by it, not reset), the inverse
    Hessian-vector product solved by CG to a relative residual of 1e-3 (recorded in the
    report with the iterations used). Measured on MovieLens-100K (default models, core 5 %
    of users, seed 0; NDCG@20 of the retained users, completeness = the suite's headline
    AUC, :mod:`trustrec.evaluate.suite`):

    ========  ==============  =====================  ===================
    model     learned         SCIF                   retrain
    ========  ==============  =====================  ===================
    WMF       .3018 / 1.000   .3020 / 0.976          .3007 / 0.554
    BPR-MF    .2675 / 1.000   .1787 / 0.363          .2725 / 0.562
    ========  ==============  =====================  ===================

    The paper's ordering of completeness holds in distance from chance (Learn > SCIF >
    Retrain: 0.50 > 0.48 > 0.05 on WMF, 0.50 > 0.14 > 0.06 on BPR-MF), as it reports (MIO
    Learn .72, SCIF .56–.60, Retrain ≈ .54). SCIF's utility loss: none on WMF, 33 % NDCG@20
    on BPR-MF for the core set (27 % for random users), against the paper's 6–22 %. On
    BPR-MF the ½-relabelled rows push the forgotten items below a typical unobserved
    item, so the model *over*-forgets: the fold-in attack reads the members below the
    non-members (AUC 0.36), which is information too. The pre-paper defaults of this
    class (``step="hybrid"``, ``collaborative=False``, 5 CG iterations) are kept as
    options: they cost BPR-MF 4 % NDCG@20 but hard-reset forgotten users and leave the item
    side remembering (completeness 1.00), a reset that only hides the obvious trace.

    Departures and choices where the papers are silent:

    * ``step``: SCIF's ``g`` contains ``∇L_train``, i.e. it is a Newton step on ``L_new``.
      A BPR model trained by SGD with early stopping is far from a minimum of any fixed
      objective, and that step moved every selected item far (test NDCG@20 of the retained
      users fell from 0.27 to 0.01–0.22). The default is therefore the classical influence
      function ``∇(L_new − L_old)`` (``"influence"``), which is the paper's update at a
      trained optimum; ``"newton"`` is the literal form. ``"hybrid"`` re-fits nodes that
      lost every training row (``∇L_new`` for them); re-fitted rows of L2-regularised
      tables are damped towards 0, not towards their old value.
    * ``H`` (``hessian="block"``): the block-diagonal Hessian (users | items). The full
      ``H_S`` is indefinite at the trained model (WMF's ``(x·y)²`` cells couple a user and an
      item through their residual): CG met negative curvature within a few steps and the
      forgotten items overshot to the bottom of the rankings. IFRU adds the cross-curvature
      back for its spillover nodes (one block Gauss–Seidel sweep, see :meth:`_forget`).
    * The paper solves the inverse HVP by minimising ``½ pᵀHp − gᵀp`` with Adam for up to
      5,000 iterations; conjugate gradients solve the same system to a stated residual in
      tens of HVPs.
    * Negatives: BPR's and NeuMF's are a fixed hash of ``(seed, user, item, k)``
      (:func:`~trustrec.models.objective.hashed_negatives`) against the current
      positives. ``g`` uses ``negatives`` (2) per forgotten row: with one, the removed
      rows' random negatives made the item step noisy (NDCG@20 -0.012 instead of -0.006).
      A remaining row whose hashed negative changes because its user lost a positive is not
      a changed term (it is a fresh random draw, zero in expectation).
    * The Hessian is estimated from the remaining rows that touch the selection, each with
      one hashed negative, sampled node-balanced down to ``hessian_rows`` (10,000; 20,000
      or every row gave the same completeness and utility); the rows' L2 terms are summed
      exactly per node.
    * Damping 2 (BPR): the item step of BPR is noisy; damping 1 forgets interactions and
      items a little more (gap to retraining closed 59 % vs 56 %, 46 % vs 38 %) but costs
      retained users more NDCG@20 (-0.009 vs -0.0065); WMF's curvature is hundreds of
      times larger, so it hardly matters there.
    * Parameters left with no data term (a forgotten BPR user without collaborative rows)
      are set to 0: the objective is flat in them and 0 is its minimum-norm minimiser
      (WMF's all-cells loss has a term for every parameter).
    * The label-corrected rows exist only during the ``forget`` call: they are never stored,
      and the next request starts from the remaining data alone.
    * The model must have a differentiable training objective (the
      :class:`~trustrec.models.capabilities.HasTrainingObjective` capability); otherwise
      the constructor raises ConfigError naming the models that have one.
    """

    exact = False
    supports = frozenset({"user", "interaction", "item"})
    needs = (HasTrainingObjective,)
    Config = SCIFConfig

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        super().__init__(model, model_config, config)
        self._neg_cache: tuple[weakref.ref, np.ndarray] | None = None

    def _fit(self, progress: bool) -> dict[str, Any]:
        details = super()._fit(progress)
        obj = self.model_.training_objective(self.objective_seed())
        self._first_negatives(obj, self.train_, sorted_keys(self.train_))  # warm the cache
        return details

    def _first_negatives(self, obj: Objective, data: Dataset, keys: np.ndarray
                         ) -> np.ndarray | None:
        """The first hashed negative of every row of ``data`` (None without negatives).

        Cached for the current training data (a weak reference: the cache never keeps a
        dataset alive), so a request re-draws only the rows of the users it touches.
        """
        if not obj.n_neg:
            return None
        cache = self._neg_cache
        if cache is not None and cache[0]() is data:
            return cache[1]
        neg = hashed_negatives(data.users, data.items, data.n_items, keys, obj.seed, 1)[:, 0]
        self._neg_cache = (weakref.ref(data), neg)
        return neg

    def _remaining_negatives(self, obj: Objective, old: Dataset, new: Dataset,
                             removed: np.ndarray, keys_old: np.ndarray,
                             keys_new: np.ndarray) -> np.ndarray | None:
        """First negatives of ``new``'s rows: the cached ones, re-drawn for the users that
        lost a positive (their rejection sampling sees a different set)."""
        old_neg = self._first_negatives(obj, old, keys_old)
        if old_neg is None:
            return None
        neg = old_neg[~removed].copy()
        affected = np.zeros(old.n_users, dtype=bool)
        affected[old.users[removed]] = True
        redo = affected[new.users]
        if redo.any():
            neg[redo] = hashed_negatives(new.users[redo], new.items[redo], new.n_items,
                                         keys_new, obj.seed, 1)[:, 0]
        return neg

    def objective_seed(self) -> int:
        """Seed of the hashed negatives: ``child_seed(seed, "objective")`` (fixed per fit)."""
        return objective_seed(self.seed_)

    # ------------------------------------------------------------------ selection
    def _select(self, old: Dataset, removed: np.ndarray, users: np.ndarray,
                items: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The user and item rows to update, given those the changed terms touch.

        Args:
            old: the training data before the request.
            removed: boolean mask of the removed rows of ``old``.
            users: sorted user indices the changed terms touch.
            items: sorted item indices the changed terms touch.

        Returns:
            ``(users, items, details)``: the selection and JSON-ready details.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ Hessian
    def _subsample(self, rows: Rows, deg_u: np.ndarray, deg_i: np.ndarray, sel_u: np.ndarray,
                   sel_i: np.ndarray, budget: int) -> Rows:
        """Node-balanced Horvitz–Thompson sample of ``rows`` of about ``budget`` rows.

        Row r is kept with probability ``π_r = min(1, m / d_r)``, ``d_r`` the smallest
        degree among the selected nodes it touches, and weighted ``1/π_r``: the Hessian
        estimate is unbiased and every selected node keeps about ``min(m, degree)`` rows.
        ``m`` is set by bisection so that ``Σ π_r ≈ budget``.
        """
        big = np.iinfo(np.int64).max
        du = np.where(sel_u, deg_u, big)
        di = np.where(sel_i, deg_i, big)
        d_r = np.minimum(du[rows.user_nodes()], di[rows.item_nodes()].min(1))
        d_r = np.maximum(d_r, 1.0).astype(np.int64)
        # Σ_r min(1, m / d_r) is monotone in m: bisect it on the histogram of d_r
        values = np.flatnonzero(hist := np.bincount(d_r)).astype(np.float64)
        counts = hist[hist > 0]
        lo, hi = 0.0, float(values[-1])
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if (counts * np.minimum(1.0, mid / values)).sum() > budget:
                hi = mid
            else:
                lo = mid
        pi = np.minimum(1.0, max(lo, 1e-12) / d_r)
        gen = rng(self.seed_, "influence", "hessian", len(self.history_))
        keep = gen.random(len(pi)) < pi
        return rows.take(keep).reweighted(rows.weights.numpy()[keep] / pi[keep])

    def _hessian_terms(self, obj: Objective, subset: ParamSubset, new: Dataset,
                       negatives: np.ndarray | None, corrected: Rows) -> _HessianTerms:
        """The terms of ``L_new`` touching the selection (see the class docstring)."""
        cfg = self.config
        users, items = subset.users.numpy(), subset.items.numpy()
        sel_u = np.zeros(new.n_users, dtype=bool)
        sel_u[users] = True
        sel_i = np.zeros(new.n_items, dtype=bool)
        sel_i[items] = True
        rows = obj.rows(new, negatives=negatives)
        rows = rows.take(sel_u[rows.user_nodes()] | sel_i[rows.item_nodes()].any(1))
        # exact per-node L2 and data-term degrees, from every row (before sampling)
        uc, ic = obj.l2_counts(rows, new.n_users, new.n_items)
        cu, ci = obj.l2_counts(corrected, new.n_users, new.n_items)
        deg_u = np.bincount(rows.user_nodes(), minlength=new.n_users)
        deg_i = np.bincount(rows.item_nodes().reshape(-1), minlength=new.n_items)
        if len(corrected):
            deg_u = deg_u + np.bincount(corrected.user_nodes(), minlength=new.n_users)
            deg_i = deg_i + np.bincount(corrected.item_nodes().reshape(-1),
                                        minlength=new.n_items)
        if cfg.hessian_rows and len(rows) > cfg.hessian_rows:
            rows = self._subsample(rows, deg_u, deg_i, sel_u, sel_i, cfg.hessian_rows)
        return _HessianTerms(rows, corrected, sel_u, sel_i, uc + cu, ic + ci,
                             np.concatenate([deg_u[users], deg_i[items]]))

    def _parts(self, obj: Objective, subset: ParamSubset, terms: _HessianTerms,
               block: bool) -> list[LossPart]:
        """Loss parts whose Hessian is the block-diagonal (users | items) or the full ``H_S``
        of the terms."""
        rows, corrected = terms.rows, terms.corrected
        user_mask = subset.node_index < len(subset.users)
        if block:
            sets = [(rows.take(terms.sel_u[rows.user_nodes()]), user_mask),
                    (rows.take(terms.sel_i[rows.item_nodes()].any(1)), ~user_mask),
                    (corrected, user_mask), (corrected, ~user_mask)]
        else:
            sets = [(rows, None), (corrected, None)]
        parts: list[LossPart] = []
        step = self.config.chunk_rows
        for part_rows, mask in sets:
            for start in range(0, len(part_rows), step):
                chunk = part_rows.take(np.arange(start, min(start + step, len(part_rows))))
                parts.append((_data_part(obj, subset, chunk), mask))
        uc, ic = terms.user_l2, terms.item_l2
        if uc.any() or ic.any():
            parts.append((lambda t: obj.node_l2(subset.tables(t), uc, ic), None))
        if obj.dense:
            masks = [user_mask, ~user_mask] if block else [None]
            glob = obj.global_loss_of(subset)
            parts.extend((glob, m) for m in masks)
        return parts

    # ------------------------------------------------------------------ forgetting
    def _solve(self, hvp: HessianVectorProduct, b: torch.Tensor,
               precond: torch.Tensor | None) -> Solution:
        cfg = self.config
        if cfg.solver == "lissa":
            return lissa(hvp, b, iters=cfg.iterations, scale=cfg.scale, damping=cfg.damping,
                         precond=precond, tol=cfg.tol,
                         seed=child_seed(self.seed_, "influence", "power"))
        return conjugate_gradient(hvp, b, iters=cfg.iterations, tol=cfg.tol,
                                  damping=cfg.damping, precond=precond)

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        """The influence step, in two stages.

        1. The direct nodes ``D`` (those the changed terms touch) solve
           ``(H_DD + λI) Δ_D = −g_D`` with the configured Hessian (block-diagonal by
           default).
        2. When :meth:`_select` added other nodes ``P`` (IFRU's spillover), they answer
           the direct step through the cross-curvature, one block Gauss–Seidel sweep:
           ``(H_PP + λI) Δ_P = −H_PD Δ_D``, with ``H_PD Δ_D`` a product of the full
           Hessian (a user's block answers its items' moves and vice versa).
        """
        cfg = self.config
        old = self.train_
        with torch_threads(cfg.num_threads):
            obj = self.model_.training_objective(self.objective_seed(), cfg.negatives or None)
            removed = old.select(train_removed)
            keys_old = sorted_keys(old)
            keys_new = np.delete(keys_old, np.searchsorted(keys_old, sorted_keys(removed)))
            old_terms = obj.rows(removed, keys_old)
            corrected = old_terms.take(np.zeros(0, np.int64))
            if cfg.collaborative:
                corrected = obj.rows(removed, keys_new,
                                     labels=obj.collaborative_labels(removed, train))
            touched_u = np.unique(removed.users).astype(np.int64)
            touched_i = np.unique(np.concatenate([old_terms.item_nodes().reshape(-1),
                                                  corrected.item_nodes().reshape(-1)]))
            users, items, sel_details = self._select(old, train_removed, touched_u,
                                                     touched_i)
            subset = ParamSubset(obj.params(), obj.user_tables, obj.item_tables, users, items)
            theta0 = subset.flat()

            def delta(theta: torch.Tensor) -> torch.Tensor:
                p = subset.tables(theta)
                return obj.row_loss(p, corrected) - obj.row_loss(p, old_terms)

            g = gradient(delta, theta0)
            negatives = self._remaining_negatives(obj, old, train, train_removed, keys_old,
                                                  keys_new)
            terms = self._hessian_terms(obj, subset, train, negatives, corrected)
            hvp = HessianVectorProduct(self._parts(obj, subset, terms,
                                                   cfg.hessian == "block"), theta0)
            degree = terms.degree
            emptied = np.concatenate([train.user_counts()[users] == 0,
                                      train.item_counts()[items] == 0])
            refit = torch.zeros(subset.size, dtype=torch.bool)
            if cfg.step == "newton":
                g = hvp.grad
            elif cfg.step == "hybrid" and emptied.any():
                refit = torch.from_numpy(emptied)[subset.node_index]
                g = torch.where(refit, hvp.grad, g)
            orphan = torch.from_numpy((degree == 0) & (not obj.dense))[subset.node_index]
            # stage 1: the nodes the changed terms touch; stage 2: the spillover nodes
            direct = torch.from_numpy(np.concatenate([np.isin(users, touched_u),
                                                      np.isin(items, touched_i)])
                                      )[subset.node_index] & ~orphan
            g = torch.where(direct, g, torch.zeros_like(g))
            # re-fitted rows of L2-regularised tables are damped towards 0 (the model's own
            # prior), not towards their old value: solve (H + λI)(θ' − a) = −g + H(θ − a)
            # with a = 0 on them and a = θ elsewhere
            to_zero = refit & subset.entries_of(obj.shrunk_tables())
            anchor = torch.where(to_zero | orphan, torch.zeros_like(theta0), theta0)
            rhs = -g
            if bool(to_zero.any()):
                rhs = rhs + hvp(torch.where(to_zero, theta0, torch.zeros_like(theta0)))
            precond = (node_preconditioner(hvp, subset, cfg.damping, cfg.probes,
                                           child_seed(self.seed_, "influence", "probes"))
                       if cfg.precondition else None)
            sol = self._solve(_restricted(hvp, direct), rhs * direct, precond)
            theta = torch.where(direct, anchor + sol.x,
                                torch.where(orphan, torch.zeros_like(theta0), theta0))
            spill = ~direct & ~orphan
            spill_details: dict[str, Any] = {}
            if bool(spill.any()):
                # one block Gauss–Seidel sweep: the spillover nodes answer the direct nodes'
                # step through the cross-curvature, (H_PP + λI) Δ_P = −H_PD Δ_D
                full = HessianVectorProduct(self._parts(obj, subset, terms, False), theta0)
                rhs2 = -full(torch.where(direct, theta - theta0, torch.zeros_like(theta)))
                sol2 = self._solve(_restricted(hvp, spill), rhs2 * spill, precond)
                theta = theta + sol2.x * spill
                spill_details = {"spillover_iterations": sol2.iterations,
                                 "spillover_residual": sol2.residual}
            new_params = {**self.model_.params_, **subset.updated(theta)}
            if negatives is not None:
                self._neg_cache = (weakref.ref(train), negatives)
            n_rows = len(terms.rows) + len(terms.corrected)
        details = {
            "solver": cfg.solver, "iterations": sol.iterations, "residual": sol.residual,
            "stopped": sol.stopped, "hvp_calls": hvp.calls,
            "n_users_updated": len(users), "n_items_updated": len(items),
            "n_params_updated": subset.size,
            "orphans_reset": int((degree == 0).sum()) if not obj.dense else 0,
            "n_emptied_nodes": int(emptied.sum()), "hessian_rows": n_rows,
            "changed_terms": len(old_terms) + len(corrected),
            "gradient_norm": float(torch.linalg.vector_norm(g)),
            "step_norm": {k: float(torch.linalg.vector_norm(v)) for k, v in
                          subset.split(theta - theta0).items()},
            **sel_details, **spill_details,
        }
        self.model_.params_ = new_params  # commit
        return ["influence step"], details


@dataclass
class _HessianTerms:
    """The (sampled) terms of ``L_new`` touching a selection, and per-node counts."""

    rows: Rows
    corrected: Rows
    sel_u: np.ndarray
    sel_i: np.ndarray
    user_l2: np.ndarray
    item_l2: np.ndarray
    degree: np.ndarray  # data terms touching each selected node (0: orphan)


def _restricted(hvp: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v ↦ M H M v`` with ``M`` the 0/1 diagonal of ``mask``: ``H`` on those entries."""
    m = mask.to(torch.float32)

    def op(v: torch.Tensor) -> torch.Tensor:
        return m * hvp(m * v)
    return op


def _data_part(obj: Objective, subset: ParamSubset, rows: Rows
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The data terms of ``rows`` (no L2) as a function of the flat selected parameters."""
    def loss(theta: torch.Tensor) -> torch.Tensor:
        return obj.row_loss(subset.tables(theta), rows, regularize=False)
    return loss


@UNLEARNERS.register("scif")
class SCIF(InfluenceUnlearner):
    """SCIF: the influence step on the users and items the forgotten rows touch (k_hop 0).

    See the module docstring for the update and :class:`InfluenceUnlearner` for the
    choices made where the paper is silent.
    """

    name = "scif"
    Config = SCIFConfig

    def _select(self, old: Dataset, removed: np.ndarray, users: np.ndarray,
                items: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Exactly the users and items the changed terms touch."""
        return users, items, {}
