"""PoT-AU: post-training attribute unlearning by making users indistinguishable.

Li et al., "Making Users Indistinguishable: Attribute-wise Unlearning in Recommender
Systems" (ACM MM 2023) and its reproducibility companion (2025). After training, only the
released user table ``U`` changes (:func:`trustrec.privacy.base.user_table`); items and
everything else stay. ``U`` minimises, by full-batch Adam from ``U₀``::

    L(U) = w · Σ_attributes L_d(U; A) + λ_p · mean_u ‖U_u − U₀_u‖²
                                       + λ_f · mean_u Σ_k max(0, s_{u,π(k+1)} − s_{u,π(k)} + m)

* ``pot-au-d2d`` (:class:`PoTAUD2D`), distribution-to-distribution: ``L_d`` is the biased
  multi-kernel RBF MMD² between each non-anchor class and the anchor class, summed with
  class-size weights (:func:`trustrec.privacy.losses.mmd2_to_anchor`).
* ``pot-au-u2u`` (:class:`PoTAUU2U`), user-to-user: ``L_d`` compares all pairs of users
  of different classes, in ``O(n d)`` from class sums; by default as the between-class
  share of the scatter (scale-free, :func:`trustrec.privacy.losses.between_class_ratio`)
  and extended to the users' outer products (second moments), see :class:`PoTAUU2U`.
* Classes are compared after subtracting *chance offsets* (the mean offsets of random
  groups of the same sizes), so they end as alike as random groups, not more alike.
* Regularisers: parameter space (``λ_p``, the MM'23 paper's) and function space (``λ_f``,
  the companion code's ranking hinge over each user's top-k unseen items of the
  *original* model, ``π``; scores of the candidate table are gathered for those k items
  only, by the model's :class:`~trustrec.models.capabilities.PairScorer` capability,
  which PoT-AU therefore needs).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.models.base import EmbeddingRecommender
from trustrec.models.capabilities import PairScorer, ReleasesUserTable
from trustrec.privacy.base import PROTECTORS, user_table
from trustrec.privacy.losses import (
    between_class_ratio,
    cross_class_sq_dist,
    mmd2_to_anchor,
    ranking_hinge,
)
from trustrec.privacy.posttrain import (
    ProtectorBase,
    chance_offsets,
    class_groups,
    original_top_k,
)
from trustrec.seeding import child_seed, rng

Normalise = Literal["total", "pairs"]
#: Normalisations of the U2U loss (see :class:`PoTAUU2U`).


@typed_config
class PoTAUConfig:
    """Options shared by both PoT-AU losses.

    Attributes:
        steps: full-batch Adam steps (the companion code's 500).
        lr: Adam learning rate (the companion code's 1e-3).
        weight: weight ``w`` of the distinguishability loss.
        param_reg: ``λ_p``, weight of the parameter-space regulariser
            ``mean_u ‖U_u − U₀_u‖²``.
        func_reg: ``λ_f``, weight of the function-space ranking hinge (mean over users of
            the per-user hinge sum).
        top_k: length of each user's original top list kept by the hinge (20 as in the
            companion code).
        margin: hinge margin between consecutive items of the original list.
        chance_offset: compare the classes after shifting each by the mean offset a
            random group of the same size shows in the original table (see
            :class:`PoTAU`); ``False`` compares the classes as they are, as the paper does.
            Default ``True``, tuned by ``benchmarks/tune_privacy.py`` on seeds 100-102
            (never on the reported seeds 0-2): ``False`` left the seen users' worst
            attacker 0.04-0.29 from chance, below it, at every weight but the smallest.
    """

    steps: PositiveInt = 500
    lr: PositiveFloat = 1e-3
    weight: PositiveFloat = 1.0
    param_reg: NonNegativeFloat = 1.0
    func_reg: NonNegativeFloat = 1e-2
    top_k: PositiveInt = 20
    margin: NonNegativeFloat = 0.05
    chance_offset: bool = True


@typed_config
class PoTAUD2DConfig(PoTAUConfig):
    """Options of ``pot-au-d2d``.

    Attributes:
        weight: as in :class:`PoTAUConfig`. Default 1, tuned by
            ``benchmarks/tune_privacy.py`` on seeds 100-102 (never on the reported seeds
            0-2; ML-100K gender, default BPR-MF, the method seeing half of the labels):
            mean leakage of the seen users' worst attacker 0.047 / 0.026 / 0.037 / 0.081
            at weight 0.3 / 1 / 3 / 10, all within 1.1 % NDCG@20
            (``benchmarks/tune_privacy_result.json``). The earlier default 3 was set on
            the reported seeds with every label seen.
        n_kernels: number of RBF kernels (5 in the companion code).
        kernel_mul: ratio between consecutive bandwidths (2: ``{b/4, b/2, b, 2b, 4b}``).
        sample: at most this many users of each class enter the MMD at a step, drawn
            afresh every step (``0``: every user, the companion code's full batch). Bounds
            the kernel matrices at ``(2 · sample)²`` entries.
    """

    weight: PositiveFloat = 1.0
    n_kernels: PositiveInt = 5
    kernel_mul: PositiveFloat = 2.0
    sample: NonNegativeInt = 1024


@typed_config
class PoTAUU2UConfig(PoTAUConfig):
    """Options of ``pot-au-u2u``.

    Attributes:
        weight: as in :class:`PoTAUConfig`. Default 3, tuned by
            ``benchmarks/tune_privacy.py`` on seeds 100-102 (never on the reported seeds
            0-2; ML-100K gender, default BPR-MF, the method seeing half of the labels):
            mean leakage of the seen users' worst attacker 0.072 / 0.051 / 0.066 / 0.082
            / 0.088 at weight 1 / 3 / 10 / 25 / 50, all within 0.6 % NDCG@20
            (``benchmarks/tune_privacy_result.json``). The earlier default 25 was set on
            the reported seeds with every label seen.
        order: ``1`` compares users by their embeddings only (the paper's loss; it can
            only equalise class means and total spread); ``2`` adds the distance between
            their centred outer products (second moments), see :class:`PoTAUU2U`.
        normalise: ``"total"`` (default) uses the between-class share of the total
            scatter (scale-free, see :class:`PoTAUU2U`); ``"pairs"`` keeps the plain mean
            over all cross-class pairs of users (the companion code's loss up to a
            constant).
    """

    weight: PositiveFloat = 3.0
    order: Literal[1, 2] = 2
    normalise: Normalise = "total"


class PoTAU(ProtectorBase):
    """PoT-AU: Adam on the released user table against a distinguishability loss.

    Subclasses give the loss (:meth:`distinguish`). See the module docstring.

    Choices:
        * Users with an unknown label (``-1``) are left out of the distinguishability loss
          but kept in both regularisers; every user's row may change.
        * Both regularisers are **means over users** (the hinge: mean of each user's sum
          over its ``top_k − 1`` consecutive pairs) so their weights do not depend on
          the number of users; the companion code sums the hinge over users (with
          ``λ = 1e-6``). The top lists exclude training items, as in the companion code.
        * Several attributes: the sum of the per-attribute losses.
        * The returned table is the one after the last step (as the companion code keeps
          its final model).
        * **Chance offsets** (``chance_offset``, not in the paper): the classes are
          compared after subtracting from each class ``c`` the offset ``o_c = mean of a
          random group of |c| users − mean of all labelled users``, measured once on the
          original table with a seeded random relabelling of the same class sizes. The
          classes thus end up as far apart (in mean) as random groups are, not closer:
          driving the loss to 0 on the actual groups makes them *more* alike than random
          groups; cross-validated attackers then score clearly **below** chance (on
          ML-100K gender with BPR-MF, logistic regression: 0.33 after exactly equalising
          the class means, 0.50–0.53 after setting the gap to a random group's), because
          each training fold carries the mirror image of the held-out fold's chance
          differences. Below chance leaks the attribute too (flip the prediction).
    """

    Config: ClassVar[type] = PoTAUConfig
    needs: ClassVar[tuple[type, ...]] = (ReleasesUserTable, PairScorer)

    def distinguish(self, rows: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        """Distinguishability loss of one attribute.

        Args:
            rows: the (offset) candidate rows of each class, largest class first.
            gen: the step's random generator (for subsampling).
        """
        raise NotImplementedError

    def _protect(self, model: EmbeddingRecommender, train: Dataset,
                 labels: dict[str, np.ndarray], *, seed: int, progress: bool
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        cfg = self.config
        u0 = torch.from_numpy(np.array(user_table(model), dtype=np.float32))
        table = u0.clone().requires_grad_(True)
        groups = {a: class_groups(lab) for a, lab in labels.items()}
        offsets = {a: (chance_offsets(u0, g, rng(seed, self.name, "offsets", a))
                       if cfg.chance_offset else torch.zeros(len(g), u0.shape[1]))
                   for a, g in groups.items()}
        users = torch.arange(len(u0))
        scorer = (model.pair_scorer(users, original_top_k(model, train, cfg.top_k))
                  if cfg.func_reg > 0 else None)
        # foreach: the default single-tensor CPU path is ~40x slower per step here
        opt = torch.optim.Adam([table], lr=cfg.lr, foreach=True)
        gen = torch.Generator().manual_seed(child_seed(seed, self.name, "sample"))
        hist: dict[str, list[float]] = {"distinguish": [], "param": [], "function": [],
                                        "total": []}
        for _ in tqdm(range(cfg.steps), desc=self.name, disable=not progress, leave=False):
            opt.zero_grad(set_to_none=True)
            dist = sum(self.distinguish([table[i] - o for i, o in zip(g, offsets[a],
                                                                      strict=True)], gen)
                       for a, g in groups.items())
            reg_p = ((table - u0) ** 2).sum(1).mean()
            reg_f = (ranking_hinge(scorer(table), cfg.margin) if scorer is not None
                     else table.new_zeros(()))
            loss = cfg.weight * dist + cfg.param_reg * reg_p + cfg.func_reg * reg_f
            loss.backward()
            opt.step()
            for key, v in (("distinguish", dist), ("param", reg_p), ("function", reg_f),
                           ("total", loss)):
                hist[key].append(v.item())
        return table.detach(), {"steps": cfg.steps, "losses": hist}


@PROTECTORS.register("pot-au-d2d")
class PoTAUD2D(PoTAU):
    """PoT-AU with the distribution-to-distribution loss (multi-kernel MMD²).

    ``L_d = Σ_{c ≠ anchor} w_c MMD²(U_c, U_anchor)``, ``w_c = n_c / Σ_{c' ≠ anchor} n_c'``.

    Choices:
        * **Class weights** ``w_c`` (the companion code sums with weight 1, it has two
          classes): with one term per class, 21-class occupation pulled 20 times as hard
          as gender, and a 7-user class as hard as a 200-user one; with weight 1 per
          class, ML-100K occupation lost 17 % NDCG@20 and logistic regression read it at
          0.46 (chance 0.048). Weighted by size, the loss of two classes is unchanged
          and occupation costs 2–4 % with the attackers at or below the unprotected
          table's level.
        * The anchor is the **largest** class (ties: lower label); the companion code
          compares every class with class 0.
        * Bandwidths ``b · 2^(i−2)``, ``i = 0..4``, with ``b`` the mean squared distance
          over pairs of the pooled samples, recomputed each step and not differentiated
          (as in the companion code). With more than two classes one kernel serves every
          comparison, its ``b`` pooled over all the classes' samples
          (:func:`~trustrec.privacy.losses.mmd2_to_anchor`): the anchor's kernel matrix
          is computed once per step instead of once per class (21-class occupation on
          6,040 users: 56 s before).
        * **Subsampling** for scale: a class with more than ``sample`` users contributes
          a fresh uniform draw of ``sample`` users each step (an unbiased estimate of
          each kernel mean, so Adam sees a stochastic gradient of the full MMD²). With
          ``sample = 0`` or small data (ML-100K: 670 and 273 users) it is the companion
          code's full batch.
    """

    name = "pot-au-d2d"
    Config = PoTAUD2DConfig

    def _draw(self, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cap = self.config.sample
        if cap == 0 or len(rows) <= cap:
            return rows
        return rows[torch.randperm(len(rows), generator=gen)[:cap]]

    def distinguish(self, rows: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        """Σ over non-anchor classes of MMD² against the anchor (the largest class),
        weighted by each class's share of the non-anchor users."""
        cfg = self.config
        anchor = self._draw(rows[0], gen)
        n_other = sum(len(r) for r in rows[1:])
        return mmd2_to_anchor([self._draw(r, gen) for r in rows[1:]], anchor,
                              [len(r) / n_other for r in rows[1:]],
                              n_kernels=cfg.n_kernels, mul=cfg.kernel_mul)


@PROTECTORS.register("pot-au-u2u")
class PoTAUU2U(PoTAU):
    """PoT-AU with the user-to-user loss (all cross-class pairwise squared distances).

    The paper's loss is ``Σ_{i, j in different classes} ‖U_i − U_j‖²`` (the companion
    code builds a dense ``n × n`` Laplacian for it). Here it is computed from class sums
    in ``O(n d)``, never an ``n × n`` matrix, and for any number of classes at the cost
    of one (:func:`~trustrec.privacy.losses.between_class_ratio`).

    Choices:
        * **Normalisation** (``normalise="total"``): the loss is the between-class share
          of the total scatter, ``Σ_c n_c ‖μ_c − μ‖² / Σ_i ‖U_i − μ‖²``. Its numerator
          is the all-pairs loss without its spread terms
          (``Σ_{c<c'} n_c n_c' ‖μ_c − μ_c'‖² = N Σ_c n_c ‖μ_c − μ‖²``). The plain mean
          over cross pairs of two classes is
          ``tr Σ_a + tr Σ_b + ‖μ_a − μ_b‖²``: it is lowered as much by shrinking
          every user towards one point (collapse) as by closing the class gap, and the
          attackers standardise their features, so shrinking buys nothing against them
          while it costs recommendation quality (on ML-100K with BPR-MF the plain mean
          with weight 10 lost 41 % NDCG@20 and let the attackers reach 0.81–0.98). The
          ratio is scale-free, so only the gap relative to the spread can give way, and
          the two regularisers keep users near their rows and rankings.
        * **Many classes**: every pair of classes is weighted by its number of user
          pairs ``n_c n_c'``, as in the paper's sum over user pairs, so each user feels
          the pull of its own class's gap, whatever the size of the class. An earlier
          version summed one ratio per class pair: a 7-user class then pulled as hard as
          a 300-user one, 21-class occupation took 116 s and lost 12.5 % NDCG@20.
        * **Per degree of freedom**: the ratio is divided by ``C − 1`` (``C`` classes),
          its expected value for random labels up to the factor ``1 / (N − 1)``, like
          the between-groups mean square of an F statistic. Without it, 21-class
          occupation (on three seeds of BPR-MF, weight 10) was pushed twenty times as
          hard as gender per unit of leak and logistic regression read it at
          0.07-0.10 (chance 0.048, unprotected 0.077); with it, at weight 25,
          0.03-0.05, and gender and age as well or better.
        * **Second moments** (``order=2``, default; not in the paper): the pairwise
          distance also compares the users' outer products ``(e − c)(e − c)ᵀ`` (``c``
          the mean labelled row, not differentiated), i.e. the same all-pairs U2U loss
          on the degree-2 feature map, still from class sums (``O(n d²)``, a ``d × d``
          matrix per class). The embedding-only loss can equalise class means and total
          spread, nothing else; on ML-100K gender the attribute also lives in the
          per-coordinate spread: with the class means made exactly equal (or as far
          apart as random groups) the MLP and boosted-tree attackers still reach
          0.63–0.66 balanced accuracy; with ``order=2`` the MLP falls to 0.47–0.50. Higher
          moments stay: where a coordinate is bimodal with class-dependent mode weights,
          boosted trees keep 0.53–0.56 (D2D's kernels see such differences).
        * Each order's ratio enters with weight 1 (both are scale-free).
    """

    name = "pot-au-u2u"
    Config = PoTAUU2UConfig

    def distinguish(self, rows: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        """The between-class share of the scatter per degree of freedom (or the mean
        cross-class pair distance) of the rows, plus that of their centred outer products
        with ``order=2``."""
        del gen
        centre = torch.cat(rows).mean(0).detach()
        feats = [r - centre for r in rows]
        orders = (False, True) if self.config.order == 2 else (False,)
        if self.config.normalise == "pairs":
            return sum(cross_class_sq_dist(feats, outer=o) for o in orders)
        return sum(between_class_ratio(feats, outer=o) for o in orders) / (len(rows) - 1)
