"""Adversarial training with gradient reversal: the classic in-training baseline.

The min-max objective of adversarial representation learning (Ganin & Lempitsky's gradient
reversal; Beutel et al. 2017 and Ganhör et al. 2022 in recommendation): the model minimises
``L_rec − λ L_adv`` over its user table while an adversary ``q_φ(a | e_u)`` minimises
``L_adv``, its cross-entropy at predicting each sensitive attribute from the user
embedding. Here in alternating form, after every phase-2 epoch of the model's own training
(:mod:`trustrec.privacy.intrain`), ``rounds`` times:

1. **Adversary step**: ``adv_steps`` full-batch Adam steps on ``L_adv`` (class-weighted
   cross-entropy, one MLP head per attribute) with the user table fixed. The adversary
   persists across rounds and epochs, as in the joint min-max game.
2. **Reversed step**: ``user_steps`` gradient-*ascent* steps on ``L_adv`` w.r.t. the
   user table with the adversary fixed, ``x_u ← x_u + λ ∇_{x_u} L_adv`` on the
   standardised table ``x`` (what a gradient-reversal layer of scale λ does to the
   encoder's gradient), each user's total move in the epoch clipped to a ball of radius
   ``radius · r`` (``r`` the table's RMS row norm) like RAID's constraint.

Choices:
    * The adversary reads standardised embeddings (the table's per-dimension mean and
      standard deviation of that epoch, held fixed in the step), like the audit's
      attackers; it is a ``d → hidden → C`` ReLU MLP initialised from a seeded generator.
    * ``L_adv`` weighs every labelled user by ``n / (C n_c)`` (balanced classes) and is
      summed over users (each user's gradient does not shrink with the number of users),
      then averaged over the attributes.
    * Many small alternations rather than one big reversal per epoch: measured on ML-100K
      gender with BPR-MF over training seeds 0-2, one round of 50 adversary and 5
      reversal steps left the attackers at 0.57-0.69 balanced accuracy (seed-dependent;
      the undefended model is at 0.63-0.69), while 10 rounds of 10 + 1 keep them at
      0.46-0.55. A larger λ is not better: ascending the cross-entropy pushes users
      *across* the adversary's boundary, and past a point the flipped structure is as
      readable as the original (λ = 0.2 in one round: MLP attacker 0.79).
    * The ascent works in standardised coordinates (units of each dimension's standard
      deviation), so λ does not depend on the model's embedding scale; the table's own
      recommendation step (the model's epoch) plays the role of ``L_rec``'s gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from trustrec.config import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
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
from trustrec.seeding import child_seed


@typed_config
class AdversarialConfig(DefenseConfig):
    """Hyper-parameters of adversarial training (``lam`` tuned out of sample).

    Attributes:
        warmup_epochs: phase-1 epochs (ordinary training); None = the model's ``epochs``.
        defense_epochs: phase-2 epochs, each followed by an adversary and a reversed step.
        lr_scale: phase-2 learning rate as a multiple of the model's ``lr``.
        hidden: hidden units of the adversary MLP.
        adv_lr: Adam learning rate of the adversary.
        adv_steps: adversary steps per round.
        weight_decay: L2 penalty of the adversary (Adam weight decay).
        lam: gradient-reversal scale λ: each ascent step adds ``λ ∇_x L_adv`` to the
            standardised table ``x``. Default 0.05, tuned by ``benchmarks/tune_privacy.py``
            on seeds 100-102 (never on the reported seeds 0-2; ML-100K gender, default
            BPR-MF, the defense seeing half of the labels): mean leakage of the seen
            users' worst attacker 0.099 / 0.084 / 0.139 / 0.109 at λ 0.02 / 0.05 / 0.1 /
            0.2, at 2.5-3.7 % NDCG@20 (``benchmarks/tune_privacy_result.json``). The
            schedule options (rounds, steps, radius) keep the values chosen earlier on
            the reported seeds with every label seen (module docstring); the script
            does not re-tune them.
        user_steps: ascent steps per round.
        rounds: adversary/reversal alternations per epoch.
        radius: largest move of a user per epoch, relative to the RMS row norm.
    """

    hidden: PositiveInt = 32
    adv_lr: PositiveFloat = 1e-2
    adv_steps: PositiveInt = 10
    weight_decay: NonNegativeFloat = 1e-4
    lam: PositiveFloat = 0.05
    user_steps: PositiveInt = 1
    rounds: PositiveInt = 10
    radius: PositiveFloat = 0.5


class _Adversary(torch.nn.Module):
    """One ``d → hidden → C_a`` ReLU MLP per attribute."""

    def __init__(self, dim: int, hidden: int, n_classes: list[int], seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.heads = torch.nn.ModuleList()
        for c in n_classes:
            head = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, c))
            with torch.no_grad():
                for layer in (head[0], head[2]):
                    bound = 1.0 / float(np.sqrt(layer.in_features))
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound
                                       - bound)
                    layer.bias.zero_()
            self.heads.append(head)

    def loss(self, x: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor,
                                                        torch.Tensor]]) -> torch.Tensor:
        """Mean over attributes of the class-weighted cross-entropy summed over users.

        Args:
            x: ``(n_users, d)`` standardised user table.
            targets: per attribute ``(rows, labels, class_weights)``.
        """
        total = x.new_zeros(())
        for head, (rows, y, w) in zip(self.heads, targets, strict=True):
            total = total + F.cross_entropy(head(x[rows]), y, weight=w, reduction="sum")
        return total / len(targets)


def _targets(labels: dict[str, np.ndarray]
             ) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], list[int]]:
    """Per attribute: labelled rows, contiguous class ids, balanced class weights."""
    out, sizes = [], []
    for lab in labels.values():
        rows = np.flatnonzero(lab >= 0)
        classes, y = np.unique(lab[rows], return_inverse=True)
        counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
        w = len(rows) / (len(classes) * counts)
        out.append((torch.from_numpy(rows), torch.from_numpy(y.astype(np.int64)),
                    torch.from_numpy(w.astype(np.float32))))
        sizes.append(len(classes))
    return out, sizes


def _reverse(adv: _Adversary, z: torch.Tensor, x: torch.Tensor, std: torch.Tensor,
             targets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], lam: float,
             steps: int, cap: float) -> torch.Tensor:
    """``steps`` ascent steps ``z ← z + λ ∇_z L_adv`` with the adversary fixed, each user's
    total move from ``x`` (in the table's units, ``(z − x) · std``) kept within ``cap``."""
    for p in adv.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(adv.loss(z, targets), z)
            with torch.no_grad():
                delta = (z + lam * grad - x) * std  # reversed gradient: ascend L_adv
                norm = delta.norm(dim=1)
                shrink = torch.where(norm > cap, cap / norm.clamp_min(1e-30),
                                     torch.ones_like(norm))
                z = x + (delta * shrink[:, None]) / std
    finally:
        for p in adv.parameters():
            p.requires_grad_(True)
    return z.detach()


@DEFENSES.register("adversarial")
class Adversarial(DefenseBase):
    """Adversarial training by gradient reversal, in alternating form (see the module).

    ``fit_info_["defense"]["steps"]`` records per epoch the adversary's loss per labelled
    user after its steps (``adv_loss``) and after the reversed step that follows
    (``reversed_loss``), both averaged over the rounds, and the mean move of a user
    relative to the RMS row norm.
    """

    name = "adversarial"
    Config = AdversarialConfig

    def _make_step(self, model: EmbeddingRecommender, train: Dataset,
                   labels: dict[str, np.ndarray], *, seed: int) -> DefenseStep:
        cfg: AdversarialConfig = self.config
        targets, sizes = _targets(labels)
        n_labelled = float(np.mean([len(t[0]) for t in targets]))
        state: dict[str, object] = {}

        def step(m: EmbeddingRecommender, epoch: int) -> dict[str, float]:
            with threadpool_limits(limits=1):  # tiny tensors: threads only add overhead
                return reversal_step(m)

        def reversal_step(m: EmbeddingRecommender) -> dict[str, float]:
            table = released_tensor(m).detach().to(torch.float32).clone()
            if "adv" not in state:
                adv = _Adversary(table.shape[1], cfg.hidden, sizes,
                                 child_seed(seed, "adversarial", "init"))
                state["adv"] = adv
                state["opt"] = torch.optim.Adam(adv.parameters(), lr=cfg.adv_lr,
                                                weight_decay=cfg.weight_decay)
            adv: _Adversary = state["adv"]  # type: ignore[assignment]
            opt: torch.optim.Optimizer = state["opt"]  # type: ignore[assignment]
            mean, std = table.mean(0), table.std(0).clamp_min(1e-8)
            x = (table - mean) / std
            r = float(table.norm(dim=1).pow(2).mean().sqrt()) or 1.0
            cap = cfg.radius * r
            z = x.clone()
            before, after = 0.0, 0.0
            for _ in range(cfg.rounds):
                zd = z.detach()
                for _ in range(cfg.adv_steps):
                    opt.zero_grad(set_to_none=True)
                    adv.loss(zd, targets).backward()
                    opt.step()
                z = _reverse(adv, z, x, std, targets, cfg.lam, cfg.user_steps, cap)
                with torch.no_grad():
                    before += float(adv.loss(zd, targets)) / n_labelled / cfg.rounds
                    after += float(adv.loss(z, targets)) / n_labelled / cfg.rounds
            with torch.no_grad():
                new = z * std + mean
                move = float((new - table).norm(dim=1).mean()) / r
            write_in_place(m, new)
            return {"adv_loss": before, "reversed_loss": after, "move": move}

        return step
