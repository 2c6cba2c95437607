"""Optimiser steps and loss weights for the long tail and for user groups: SAM, EISAM, IPS,
logit adjustment, S-DRO.

A model's training loop hands each mini-batch to :meth:`Stepper.step` as a function that
returns the batch's per-sample losses, target items and users; the stepper weights them, takes
the gradient (one or two passes) and steps the model's base optimiser (Adam). The
sequential models and NeuMF take these options (their configs extend
:class:`TailOptions`):

* ``optimizer = "adam"``: plain ``∇ mean(ℓ)``.
* ``optimizer = "sam"`` (Foret et al., ICLR 2021): ``ε = ρ g/‖g‖`` from the batch gradient
  ``g`` at ``θ``, the gradient taken again at ``θ + ε`` and applied at ``θ``; two passes.
* ``optimizer = "eisam"``: item-wise sharpness-aware minimisation. EISAM (Zhang et al.,
  2026) regularises the loss landscape item by item with a frequency-dependent weight;
  its exact penalty is not retrievable (``../shared/papers/fairness-longtail.md``), so
  this follows the closest open recipe, Focal-SAM (Li et al., ICML 2025), with items as
  the classes:
  ``L(θ) + λ Σ_i w_i [L_i(θ + ε) − L_i(θ)]``, ``w_i = (1 − π_i)^γ``, where ``L_i`` is the
  loss of the samples whose target is item ``i`` and ``ε = ρ ∇L^w/‖∇L^w‖`` with
  ``L^w = Σ_i w_i L_i``. Its gradient (``ε`` held fixed, as SAM) is
  ``∇Σ(1 − c_i)L_i(θ) + ∇Σ c_i L_i(θ + ε)``, ``c_i = λ w_i``: head items keep the plain
  loss, tail items get the sharpness-aware one.

  Choices, where the paper is silent: ``π_i`` is item ``i``'s training frequency relative
  to the most frequent item's (``count_i / max count``): as a share of all interactions
  every ``π_i`` of a catalogue is tiny and every weight would be ≈ 1, while relative to
  the head the weight runs from 0 (the most popular item) to 1 (unseen items). And the
  ascent direction of a step is the weighted gradient of the *previous* step (taken at
  its perturbed point), which the second pass computes anyway; Focal-SAM spends a third
  pass on the current batch's. So EISAM costs what SAM costs, two passes a step
  (``benchmarks/fairness_speed.py`` prints the ratio), and its first step is plain;
  ``eisam_ascent = "current"`` is Focal-SAM's exact three-pass recipe. The
  reuse has a limit: where an embedding table's gradient touches only the batch's rows
  (NeuMF, sequential models with ``loss = "bce"``), the ascent moves the *previous*
  batch's rows, so the current batch's tail items get sharpness through the dense
  weights only; with the full-softmax loss (the sequential default) the item table's
  gradient is dense and every row moves.

* Loss weights (``reweight``), the long-tail baselines: ``"ips"`` weights each sample by
  ``count_y^(−power)`` (inverse propensity of its target's popularity; samples without a
  target item, the negatives of a pointwise loss, keep weight 1), normalised to mean 1
  over the training interactions; ``"logit_adjust"`` (Menon et al., ICLR 2021) adds
  ``power · log π_y`` (``π`` the popularity share) to every logit during training only, a
  per-item offset handed to the model's loss (:attr:`Stepper.logit_offset`).
* ``reweight = "sdro"``, the user-side baseline of In-UCDS: Streaming DRO (Wen et al.,
  WWW 2022) over the advantaged / disadvantaged users (the top ``sdro_top`` share by
  training interactions, as UGF's groups). The batch loss is ``Σ_g q_g L_g``, ``L_g`` the
  mean loss of group ``g``'s samples in the batch; each group's loss is tracked by a
  streaming estimate ``L̂_g ← (1 − β) L̂_g + β L_g`` (``β = sdro_beta``, 0.1 as in the
  released code), and the group weights take the Group-DRO mirror-ascent step on it,
  ``q_g ← q_g exp(η L̂_g)`` normalised (``η = sdro_eta``). ``η = 1`` by default, chosen
  by ``benchmarks/tune_fairness.py --methods s-dro`` (NeuMF, seeds 100-104, validation
  item): the released code's 0.01 leaves ``q`` near uniform, i.e. the 5 % advantaged
  users' samples weigh half the loss, which cost 13 % NDCG@10 and widened |UGF|
  (0.0138 → 0.0215); ``η = 1`` gave |UGF| 0.0121 at −2 % NDCG. Choices: ``q`` starts
  uniform; a group absent from a batch keeps its estimate and adds nothing to that
  batch's loss; the weights are updated once per step, before the gradient (the batch's
  losses at ``θ``), and are not differentiated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from trustrec.config import NonNegativeFloat, PositiveFloat, UnitInterval, typed_config
from trustrec.data.dataset import Dataset

#: ``closure() -> (losses, targets[, users])``: per-sample losses ``(n,)``, target items
#: ``(n,)`` (0-based; ``-1`` for a sample with no target item, e.g. a sampled negative of
#: a pointwise loss, which keeps weight 1 and the plain loss) and, for S-DRO, each
#: sample's user ``(n,)``, of one mini-batch at the model's current parameters.
BatchLosses = Callable[[], tuple[torch.Tensor, ...]]

OPTIMIZERS = ("adam", "sam", "eisam")
ASCENTS = ("previous", "current")
REWEIGHTS = ("none", "ips", "logit_adjust", "sdro")


@typed_config
class TailOptions:
    """The long-tail options of a model trained by the shared stepper (a model's config
    extends this one).

    Attributes:
        optimizer: ``"adam"``, or Adam under ``"sam"`` / ``"eisam"`` (item-wise SAM).
        rho: SAM / EISAM radius.
        eisam_lambda: EISAM's ``λ`` (share of a tail item's loss made sharpness-aware).
        eisam_gamma: EISAM's ``γ`` of the frequency weight ``(1 − π_i)^γ``.
        eisam_ascent: ``"previous"`` (reuse the last step's weighted gradient; two
            passes a step, as SAM) or ``"current"`` (Focal-SAM's exact recipe, a third
            pass on this batch).
        reweight: ``"none"``, ``"ips"`` (inverse-popularity sample weights),
            ``"logit_adjust"`` (popularity offsets on the training logits) or ``"sdro"``
            (Streaming DRO over the advantaged / disadvantaged users).
        reweight_power: the IPS exponent or the logit adjustment's ``τ``.
        sdro_eta: S-DRO's step size ``η`` on the group weights.
        sdro_beta: S-DRO's streaming rate ``β`` of the group-loss estimates.
        sdro_top: share of users that are advantaged, for S-DRO's groups.
    """

    optimizer: Literal["adam", "sam", "eisam"] = "adam"
    rho: PositiveFloat = 0.05
    eisam_lambda: UnitInterval = 1.0
    eisam_gamma: NonNegativeFloat = 1.0
    eisam_ascent: Literal["previous", "current"] = "previous"
    reweight: Literal["none", "ips", "logit_adjust", "sdro"] = "none"
    reweight_power: NonNegativeFloat = 1.0
    sdro_eta: NonNegativeFloat = 1.0
    sdro_beta: UnitInterval = 0.1
    sdro_top: Annotated[float, Field(gt=0, lt=1)] = 0.05


def item_sharpness(item_counts: np.ndarray, lam: float, gamma: float) -> np.ndarray:
    """EISAM's per-item share of sharpness-aware loss, ``c_i = λ (1 − π_i)^γ`` with ``π_i``
    the item's training count relative to the most frequent item's (module docstring),
    float32 ``(n_items,)``."""
    counts = np.asarray(item_counts, dtype=np.float64)
    relative = counts / max(float(counts.max(initial=0.0)), 1.0)
    return (float(lam) * (1 - relative) ** float(gamma)).astype(np.float32)


class Stepper:
    """One optimisation step of a mini-batch under the long-tail options (module
    docstring).

    Args:
        params: the trained parameters.
        opt: the base optimiser over them.
        item_counts: training frequency of each item (targets), ``(n_items,)``.
        optimizer: ``"adam"``, ``"sam"`` or ``"eisam"``.
        rho: the SAM / EISAM radius.
        eisam_lambda: ``λ`` of EISAM, in [0, 1].
        eisam_gamma: ``γ`` of EISAM's weight ``(1 − π)^γ``.
        reweight: ``"none"``, ``"ips"``, ``"logit_adjust"`` or ``"sdro"``.
        power: IPS exponent or the logit adjustment's ``τ``.
        user_groups: S-DRO's group (0 / 1) of every user, ``(n_users,)``.
        sdro_eta: S-DRO's ``η``.
        sdro_beta: S-DRO's ``β``.
        eisam_ascent: where EISAM's ascent direction comes from: ``"previous"`` (the last
            step's weighted gradient, two passes) or ``"current"`` (Focal-SAM's third
            pass on this batch).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer,
                 item_counts: np.ndarray, optimizer: str = "adam", rho: float = 0.05,
                 eisam_lambda: float = 1.0, eisam_gamma: float = 1.0,
                 reweight: str = "none", power: float = 1.0,
                 user_groups: np.ndarray | None = None, sdro_eta: float = 1.0,
                 sdro_beta: float = 0.1, eisam_ascent: str = "previous") -> None:
        if optimizer not in OPTIMIZERS or reweight not in REWEIGHTS:
            raise ValueError(f"optimizer {optimizer!r} / reweight {reweight!r}: expected "
                             f"one of {OPTIMIZERS} / {REWEIGHTS}")
        if (reweight == "sdro") != (user_groups is not None):
            raise ValueError("user_groups are S-DRO's and it needs them")
        if eisam_ascent not in ASCENTS:
            raise ValueError(f"eisam_ascent {eisam_ascent!r}: expected one of {ASCENTS}")
        self.ascent = eisam_ascent
        self.params = [p for p in params if p.requires_grad]
        self.opt, self.kind, self.rho = opt, optimizer, float(rho)
        counts = torch.as_tensor(np.asarray(item_counts, dtype=np.float64))
        self.sample_weight: torch.Tensor | None = None
        if reweight == "ips":
            w = counts.clamp(min=1.0) ** (-float(power))
            mean = (w * counts).sum() / counts.sum().clamp(min=1.0)  # over training targets
            self.sample_weight = (w / mean).float()
        #: Per-item offset added to the training logits (logit adjustment), or None.
        self.logit_offset: torch.Tensor | None = None
        if reweight == "logit_adjust":
            share = counts.clamp(min=1.0) / counts.clamp(min=1.0).sum()
            self.logit_offset = (float(power) * share.log()).float()
        #: S-DRO's group of each user, its group weights and streaming group losses.
        self.user_groups: torch.Tensor | None = None
        if user_groups is not None:
            self.user_groups = torch.as_tensor(np.asarray(user_groups, dtype=np.int64))
            self.group_weight = torch.full((2,), 0.5, dtype=torch.float64)
            self.group_loss = torch.zeros(2, dtype=torch.float64)
            self._seen = torch.zeros(2, dtype=torch.bool)
            self.sdro_eta, self.sdro_beta = float(sdro_eta), float(sdro_beta)
        self.sharp = torch.from_numpy(item_sharpness(counts.numpy(), eisam_lambda,
                                                     eisam_gamma))
        self._ascent: list[torch.Tensor] | None = None

    @classmethod
    def from_config(cls, params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer,
                    train: Dataset, cfg: TailOptions) -> Stepper:
        """The stepper of a model config that extends :class:`TailOptions`, for training on
        ``train`` (its item counts; its user groups for S-DRO)."""
        from trustrec.evaluate.fairness import activity_groups

        groups = (activity_groups(train, cfg.sdro_top).astype(np.int64)
                  if cfg.reweight == "sdro" else None)
        return cls(params, opt, train.item_counts(), cfg.optimizer, cfg.rho,
                   cfg.eisam_lambda, cfg.eisam_gamma, cfg.reweight, cfg.reweight_power,
                   groups, cfg.sdro_eta, cfg.sdro_beta, cfg.eisam_ascent)

    def to(self, device: torch.device) -> Stepper:
        """Move the stepper's per-item and per-user tables to ``device`` (the model's);
        returns itself."""
        for name in ("sample_weight", "logit_offset", "sharp", "user_groups",
                     "group_weight", "group_loss", "_seen"):
            value = getattr(self, name, None)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self

    @staticmethod
    def _per_item(table: torch.Tensor, targets: torch.Tensor, default: float
                  ) -> torch.Tensor:
        """``table[target]`` per sample, ``default`` where the target is ``-1``."""
        return torch.where(targets >= 0, table[targets.clamp(min=0)],
                           torch.tensor(default, dtype=table.dtype, device=table.device))

    def _weighted(self, losses: torch.Tensor, targets: torch.Tensor,
                  users: torch.Tensor | None = None, extra: torch.Tensor | None = None
                  ) -> torch.Tensor:
        w = (None if self.sample_weight is None
             else self._per_item(self.sample_weight, targets, 1.0))
        if extra is not None:
            w = extra if w is None else w * extra
        if self.user_groups is not None:
            group = self.user_groups[self._users(users)]
            size = torch.bincount(group, minlength=2).to(torch.float64)
            share = (self.group_weight * len(group) / size.clamp(min=1.0))[group].float()
            w = share if w is None else w * share  # mean(ℓ·w) = Σ_g q_g L_g
        return (losses if w is None else losses * w).mean()

    @staticmethod
    def _users(users: torch.Tensor | None) -> torch.Tensor:
        if users is None:
            raise ValueError("S-DRO needs each sample's user: the closure returns "
                             "(losses, targets, users)")
        return users

    def _update_groups(self, losses: torch.Tensor, users: torch.Tensor | None) -> None:
        """S-DRO: the streaming group losses and the weights' mirror-ascent step."""
        group = self.user_groups[self._users(users)]  # type: ignore[index]
        size = torch.bincount(group, minlength=2)
        mean = (torch.bincount(group, weights=losses.detach().to(torch.float64),
                               minlength=2) / size.clamp(min=1))
        present = size > 0
        fresh = present & ~self._seen  # a group's first batch sets its estimate
        beta = self.sdro_beta
        self.group_loss = torch.where(fresh, mean, torch.where(
            present, (1 - beta) * self.group_loss + beta * mean, self.group_loss))
        self._seen |= present
        q = self.group_weight * torch.exp(self.sdro_eta * self.group_loss)
        self.group_weight = q / q.sum()

    def _grads(self) -> list[torch.Tensor | None]:
        return [None if p.grad is None else p.grad.detach().clone() for p in self.params]

    def _direction(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        norm = torch.sqrt(sum((g * g).sum() for g in grads if g is not None)).clamp(min=1e-12)
        return [torch.zeros_like(p) if g is None else self.rho * g / norm
                for p, g in zip(self.params, grads, strict=True)]

    def _shift(self, eps: list[torch.Tensor], sign: float) -> None:
        with torch.no_grad():
            for p, e in zip(self.params, eps, strict=True):
                p.add_(e, alpha=sign)

    def step(self, closure: BatchLosses) -> float:
        """Zero the gradients, compute them under the options, step; returns the batch's
        plain mean loss at ``θ``."""
        self.opt.zero_grad()
        losses, targets, *rest = closure()
        users = rest[0] if rest else None
        plain = float(losses.detach().mean())
        if self.user_groups is not None:
            self._update_groups(losses, users)
        if self.kind == "adam":
            self._weighted(losses, targets, users).backward()
        elif self.kind == "sam":
            self._weighted(losses, targets, users).backward()
            eps = self._direction(self._grads())
            self.opt.zero_grad()
            self._shift(eps, 1.0)
            self._weighted(*closure()).backward()
            self._shift(eps, -1.0)
        else:
            c = self._per_item(self.sharp, targets, 0.0)
            current = self.ascent == "current"
            self._weighted(losses, targets, users, extra=1 - c).backward(  # head, at θ
                retain_graph=current)
            if current:  # Focal-SAM's own pass: the ascent from this batch's tail loss
                head = self._grads()
                for p in self.params:
                    p.grad = None
                self._weighted(losses, targets, users, extra=c).backward()
                self._ascent = self._direction(self._grads())
                for p, g in zip(self.params, head, strict=True):
                    p.grad = g
            if self._ascent is None:
                self._ascent = [torch.zeros_like(p) for p in self.params]
            eps = self._ascent
            self._shift(eps, 1.0)
            before = self._grads()
            for p in self.params:
                p.grad = None
            losses2, targets2, *rest2 = closure()
            self._weighted(losses2, targets2, rest2[0] if rest2 else None,
                           extra=self._per_item(self.sharp, targets2, 0.0)).backward()
            tail = self._grads()
            self._shift(eps, -1.0)
            if not current:
                self._ascent = self._direction(tail)
            for p, g in zip(self.params, before, strict=True):
                if g is not None:  # a parameter no pass reached keeps grad None
                    p.grad = g if p.grad is None else p.grad + g
        self.opt.step()
        return plain
