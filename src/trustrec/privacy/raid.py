"""RAID: in-training defense by optimal-transport alignment to a Wasserstein barycenter.

Feng et al., "RAID: An In-Training Defense against Attribute Inference Attacks in
Recommender Systems" (arXiv 2504.11510, 2025). The recommendation objective is paired with
a defensive objective: the distribution of user embeddings of every attribute group is
transported onto one centroid distribution P*, a Wasserstein-2 barycenter of the groups
constrained to keep recommendation performance, so that the embeddings no longer tell the
groups apart. There is no public code; this is a reimplementation from the paper's
description (see ``/work/shared/papers/attribute-privacy.md`` §3), with POT.

One defended epoch (phase 2, after the ordinary BPR/WMF/... epoch):

1. For each attribute (or the joint groups), the groups ``k`` of labelled users have
   empirical embedding distributions ``P_k`` (uniform weights over their ``n_k`` users).
2. **Barycenter** P* = argmin_P Σ_k w_k W2²(P_k, P), ``w_k = n_k / n``:
   ``solver="exact"``: free-support barycenter with ``support`` uniform points
   (``ot.lp.free_support_barycenter``, initialised at a seeded sample of users);
   ``solver="gaussian"``: the closed-form Bures-Wasserstein barycenter of the groups'
   Gaussian fits (``ot.gaussian.bures_wasserstein_barycenter``).
3. **Transport**: the exact OT plan ``π_k = ot.emd(a_k, b, ‖x − y‖²)`` from each group to
   P* and its barycentric map ``T(e_i) = n_k Σ_j π_ij y_j`` (exact solver), or the
   Gaussian Monge map ``T(e) = A_k e + b_k`` (gaussian solver).
4. **Constrained alignment**: each labelled user moves ``β (T(e_i) − e_i)``, clipped to a
   ball of radius ``radius · r`` around its current embedding, ``r`` the table's RMS row
   norm. Optionally (``null_permutations > 0``) each group's move is first shrunk to the
   part that exceeds what random labels would show (:func:`null_shrinkage`).

Choices (the paper's details could not be retrieved):
    * "Two phases" = warm-up by ordinary training, then recommendation epochs alternating
      with the alignment step above (:mod:`trustrec.privacy.intrain`). Between alignments
      the recommendation epoch pulls users back toward what their interactions say, which
      is how the recommendation objective and the defensive objective are traded off.
    * The "recommendation-performance constraint" is the per-user ε-ball on the move
      (``radius``), as LEGO's projection: no user's embedding changes by more than a
      fixed share of the typical embedding norm per step, so its ranking cannot change
      arbitrarily. The ball projects the unconstrained barycentric target; it does not
      solve the constrained barycenter problem exactly.
    * Several attributes are aligned one after the other within a step
      (``groups="sequential"``), or at once on the joint groups, i.e. every combination
      of classes (``groups="joint"``; users missing any label are not moved). Sequential
      keeps the groups large (occupation × gender × age leaves groups of one user).
    * Users with an unknown label (``-1``) for the attribute are not moved by it.
    * The default solver is the Gaussian one with a partial step ``beta=0.05``, tuned by
      ``benchmarks/tune_privacy.py`` on seeds 100-102 (never on the reported seeds 0-2;
      ML-100K gender, default BPR-MF, the defense seeing half of the labels): mean
      leakage of the seen users' worst attacker 0.105 / 0.086 / 0.093 / 0.145 / 0.184
      at ``beta`` 0.03 / 0.05 / 0.08 / 0.12 / 0.2, at 2.3-2.7 % NDCG@20
      (``benchmarks/tune_privacy_result.json``); the earlier 0.08 was set on the
      reported seeds. Why a partial step: a full step (``beta=1``) equalises the
      groups' means and covariances *exactly* over the very users an attacker is
      cross-validated on; that over-corrects: each training fold's groups then differ in
      the direction opposite to the held-out users, and a cross-validated attacker falls
      *below* chance (logistic regression 0.37), which is information too (flipping its
      answers gives 0.63). The exact solver does the same and worse for non-linear
      attackers (MLP and trees 0.26-0.35 at ``beta=0.5``): the barycentric projection
      onto a shared discrete support contracts each group by an amount that depends on
      its size. No single step puts every attacker within 0.05 of chance on this model:
      the MLP and logistic regression react to different parts of the same move (the
      MLP falls below chance while logistic regression is still above it).
    * What no step changes: users whose labels the defense did not see are not moved,
      and the item table still encodes the attribute. On the held-out users, and on
      users folded back in from the item table, the tuned RAID leaks as much as the
      undefended model (0.15-0.17 on the tuning seeds).
    * Known limit: with many small groups (occupation: 21 classes of 7-196 users, aligned
      together with gender and age) the same step still over-corrects (occupation
      attackers' one-vs-rest AUC 0.22-0.35, chance 0.5). ``null_permutations=3`` with
      ``beta=1`` adapts the step to each group's noise and brings occupation to AUC
      0.41-0.47 and age to 0.36-0.52, at the price of gender leakage 0.07 instead of
      0.05 and 3-4x the time; it is therefore an option, not the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import ot
from threadpoolctl import threadpool_limits

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.base import DEFENSES
from trustrec.privacy.intrain import (
    DefenseBase,
    DefenseConfig,
    DefenseStep,
    released_tensor,
    write_in_place,
)
from trustrec.seeding import rng

Solver = Literal["exact", "gaussian"]
Grouping = Literal["sequential", "joint"]


@typed_config
class RAIDConfig(DefenseConfig):
    """Hyper-parameters of RAID (``beta`` tuned out of sample, see the module docstring).

    Attributes:
        warmup_epochs: phase-1 epochs (ordinary training); None = the model's ``epochs``.
        defense_epochs: phase-2 epochs, each followed by one alignment step.
        lr_scale: phase-2 learning rate as a multiple of the model's ``lr``.
        solver: ``"exact"`` (free-support barycenter + exact OT plans) or ``"gaussian"``
            (closed-form Bures-Wasserstein barycenter and Monge maps).
        support: number of barycenter support points (exact solver; at most the number of
            labelled users).
        barycenter_iters: fixed-point iterations of the free-support barycenter.
        beta: step toward the transport target, in (0, 1]. Default 0.05, tuned by
            ``benchmarks/tune_privacy.py`` on seeds 100-102 (never the reported 0-2).
        radius: the largest move of a user per step, as a multiple of the table's RMS row
            norm (the recommendation constraint).
        groups: ``"sequential"`` (one attribute after the other) or ``"joint"``.
        cov_reg: ridge added to each group covariance, as a share of its mean variance
            (gaussian solver; groups can have fewer users than dimensions).
        null_permutations: label permutations per step that estimate the displacement
            random labels would have (:func:`null_shrinkage`); 0 = apply the full
            transport.
    """

    solver: Solver = "gaussian"
    support: PositiveInt = 256
    barycenter_iters: PositiveInt = 10
    beta: UnitInterval = 0.05
    radius: PositiveFloat = 1.0
    groups: Grouping = "sequential"
    cov_reg: NonNegativeFloat = 1e-3
    null_permutations: NonNegativeInt = 0


# ---------------------------------------------------------------------------- OT pieces
#: ``transport(k, x) -> T(x)``: the fitted map of group ``k`` applied to points ``x``.
Transport = Callable[[int, np.ndarray], np.ndarray]


def exact_transport(xs: list[np.ndarray], weights: np.ndarray, support: int, iters: int,
                    gen: np.random.Generator) -> tuple[Transport, float]:
    """Free-support W2 barycenter of the groups and the exact-OT barycentric maps onto it.

    Args:
        xs: the groups' points, ``(n_k, d)`` each (uniform weights).
        weights: barycenter weights ``w_k`` (sum 1).
        support: barycenter support size (capped at the total number of points).
        iters: fixed-point iterations of ``ot.lp.free_support_barycenter``.
        gen: seeded generator for the initial support (a sample of the points).

    Returns:
        ``(transport, cost)``: ``transport(k, x)`` solves ``ot.emd`` from the uniform
        measure on ``x`` to the barycenter and returns the barycentric projection
        ``T(x_i) = Σ_j π_ij y_j / a_i``; ``cost = Σ_k w_k W2²(P_k, P*)``.
    """
    pooled = np.concatenate(xs)
    m = min(int(support), len(pooled))
    init = pooled[np.sort(gen.choice(len(pooled), size=m, replace=False))]
    a = [np.full(len(x), 1.0 / len(x)) for x in xs]
    b = np.full(m, 1.0 / m)
    bary = ot.lp.free_support_barycenter(xs, a, init, b=b, weights=weights,
                                         numItermax=int(iters))
    cost = sum(float(wk * ot.emd2(ak, b, ot.dist(x, bary)))
               for x, ak, wk in zip(xs, a, weights, strict=True))

    def transport(k: int, x: np.ndarray) -> np.ndarray:
        ax = np.full(len(x), 1.0 / len(x))
        plan = ot.emd(ax, b, ot.dist(x, bary))
        return (plan @ bary) / ax[:, None]

    return transport, cost


def gaussian_transport(xs: list[np.ndarray], weights: np.ndarray, cov_reg: float
                       ) -> tuple[Transport, float]:
    """Bures-Wasserstein barycenter of the groups' Gaussian fits and the Monge maps onto it.

    Args:
        xs: the groups' points, ``(n_k, d)`` each.
        weights: barycenter weights ``w_k`` (sum 1).
        cov_reg: ridge on each covariance, relative to its mean variance.

    Returns:
        ``(transport, cost)``: ``transport(k, x) = x A_k + b_k`` (the W2-optimal affine map
        from group ``k``'s Gaussian to the barycenter), and ``Σ_k w_k W2²`` between the
        Gaussian fits and the barycenter.
    """
    d = xs[0].shape[1]
    means = np.stack([x.mean(axis=0) for x in xs])
    covs = []
    for x in xs:
        c = np.cov(x, rowvar=False, bias=True).reshape(d, d)
        covs.append(c + cov_reg * max(np.trace(c) / d, 1e-12) * np.eye(d))
    covs = np.stack(covs)
    mb, cb = ot.gaussian.bures_wasserstein_barycenter(means, covs, weights)
    maps = [ot.gaussian.bures_wasserstein_mapping(mk, mb, ck, cb)
            for mk, ck in zip(means, covs, strict=True)]
    cost = sum(float(wk * ot.gaussian.bures_wasserstein_distance(mk, mb, ck, cb) ** 2)
               for mk, ck, wk in zip(means, covs, weights, strict=True))

    def transport(k: int, x: np.ndarray) -> np.ndarray:
        a_k, b_k = maps[k]
        return x @ a_k + b_k

    return transport, cost


def _groupings(labels: dict[str, np.ndarray], how: str) -> list[np.ndarray]:
    """Label arrays to align on, one after the other (``-1`` = not moved)."""
    if how == "sequential" or len(labels) == 1:
        return list(labels.values())
    stacked = np.stack(list(labels.values()), axis=1)
    known = (stacked >= 0).all(axis=1)
    joint = np.full(len(stacked), -1, dtype=np.int64)
    if known.any():
        joint[known] = np.unique(stacked[known], axis=0, return_inverse=True)[1].ravel()
    return [joint]


def _displacements(xs: list[np.ndarray], weights: np.ndarray, cfg: RAIDConfig,
                   gen: np.random.Generator) -> tuple[list[np.ndarray], float]:
    """``T(x) − x`` for every point of every group, and the barycenter cost."""
    if cfg.solver == "exact":
        transport, cost = exact_transport(xs, weights, cfg.support, cfg.barycenter_iters, gen)
    else:
        transport, cost = gaussian_transport(xs, weights, cfg.cov_reg)
    return [transport(k, x) - x for k, x in enumerate(xs)], cost


def _parts(disp: list[np.ndarray]) -> np.ndarray:
    """``(K, 2)`` squared sizes of each group's displacement: its mean (the group-mean
    shift) and the mean squared remainder (the change of shape)."""
    out = []
    for d in disp:
        shift = d.mean(axis=0)
        out.append((float(shift @ shift), float(np.mean(np.sum((d - shift) ** 2, axis=1)))))
    return np.array(out)


def null_shrinkage(table: np.ndarray, lab: np.ndarray, disp: list[np.ndarray],
                   weights: np.ndarray, cfg: RAIDConfig, gen: np.random.Generator
                   ) -> np.ndarray:
    """Per-group shares ``(s_shift, s_shape)`` of the transport to apply: the excess over
    random labels.

    Each group's displacement ``T(x) − x`` is split into its mean (the group-mean shift)
    and the remainder (the change of shape). ``c_k`` is the squared size of a part for
    group ``k``; ``c⁰_k`` the same for a group of the same size drawn at random (the
    labels of the labelled users permuted ``cfg.null_permutations`` times, averaged).
    ``s_k = max(0, 1 − sqrt(c⁰_k / c_k))`` moves the group so that what is left of that
    part has the size it would have if the attribute were independent of the embeddings:
    no more (leakage), and no less (an exact in-sample equalisation, which
    cross-validated attackers read with the sign flipped). The two parts are shrunk
    separately because their noise differs: a group's mean is estimated far better than
    its covariance, so a pooled size would hide a real mean shift under covariance noise.

    Returns:
        ``(K, 2)`` shares in ``[0, 1]``.
    """
    classes = np.unique(lab[lab >= 0])
    known = np.flatnonzero(lab >= 0)
    null = np.zeros((len(classes), 2))
    for _ in range(cfg.null_permutations):
        perm = np.full_like(lab, -1)
        perm[known] = gen.permutation(lab[known])
        xs = [table[perm == c] for c in classes]
        null += _parts(_displacements(xs, weights, cfg, gen)[0])
    null /= cfg.null_permutations
    return np.clip(1.0 - np.sqrt(null / np.maximum(_parts(disp), 1e-30)), 0.0, 1.0)


def align_step(table: np.ndarray, groupings: list[np.ndarray], cfg: RAIDConfig,
               gen: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """One constrained alignment of a user table (see the module docstring).

    Args:
        table: ``(n_users, d)`` user embeddings (not changed).
        groupings: label arrays (``-1`` = not moved), aligned one after the other.
        cfg: the RAID config.
        gen: seeded generator (barycenter initialisation, label permutations).

    Returns:
        ``(new_table, info)`` with ``info``: ``w2`` (mean of ``Σ_k w_k W2²(P_k, P*)``
        before the move, relative to ``r²``), ``shrink`` (mean share of the transport
        applied, :func:`null_shrinkage`; 1 without it), ``move`` (mean move of a moved
        user relative to ``r``) and ``clipped`` (share of moved users whose move hit the
        ball).
    """
    out = table.astype(np.float64, copy=True)
    r = float(np.sqrt(np.mean(np.sum(out * out, axis=1)))) or 1.0
    w2s, shrinks, moves, clipped = [], [], [], []
    for lab in groupings:
        members = [np.flatnonzero(lab == c) for c in np.unique(lab[lab >= 0])]
        if len(members) < 2:
            continue
        xs = [out[g] for g in members]
        weights = np.array([len(g) for g in members], dtype=np.float64)
        weights /= weights.sum()
        disp, cost = _displacements(xs, weights, cfg, gen)
        share = (null_shrinkage(out, lab, disp, weights, cfg, gen)
                 if cfg.null_permutations else np.ones((len(members), 2)))
        idx = np.concatenate(members)
        delta = cfg.beta * np.concatenate([
            s[0] * d.mean(axis=0) + s[1] * (d - d.mean(axis=0))
            for s, d in zip(share, disp, strict=True)])
        norm = np.linalg.norm(delta, axis=1)
        cap = cfg.radius * r
        scale = np.where(norm > cap, cap / np.maximum(norm, 1e-30), 1.0)
        out[idx] += delta * scale[:, None]
        w2s.append(cost / r**2)
        shrinks.append(float(np.dot(weights, share.mean(axis=1))))
        moves.append(float(np.mean(norm * scale)) / r)
        clipped.append(float(np.mean(norm > cap)))
    info = {"w2": float(np.mean(w2s)) if w2s else 0.0,
            "shrink": float(np.mean(shrinks)) if shrinks else 0.0,
            "move": float(np.mean(moves)) if moves else 0.0,
            "clipped": float(np.mean(clipped)) if clipped else 0.0}
    return out, info


@DEFENSES.register("raid")
class RAID(DefenseBase):
    """RAID (Feng et al., 2025): OT alignment of attribute groups to a W2 barycenter.

    ``fit(model, model_config, train, valid, labels, seed=...)`` trains the model in two
    phases (:mod:`trustrec.privacy.intrain`); after every phase-2 epoch the released user
    table is aligned by :func:`align_step`. ``fit_info_["defense"]["steps"]`` records, per
    epoch, the barycenter cost before the move (``w2``), the mean move and the clipped
    share. See the module docstring for the method and the choices made.
    """

    name = "raid"
    Config = RAIDConfig

    def _make_step(self, model: EmbeddingRecommender, train: Dataset,
                   labels: dict[str, np.ndarray], *, seed: int) -> DefenseStep:
        cfg: RAIDConfig = self.config
        groupings = _groupings(labels, cfg.groups)

        def step(m: EmbeddingRecommender, epoch: int) -> dict[str, float]:
            table = released_tensor(m).detach().numpy()
            with threadpool_limits(limits=1):
                new, info = align_step(table, groupings, cfg,
                                       rng(seed, "raid", "epoch", epoch))
            write_in_place(m, new)
            return info

        return step
