"""Optimiser steps and loss weights for the long tail: SAM, EISAM, IPS, logit adjustment.

A model's training loop hands each mini-batch to :meth:`Stepper.step` as a function that
returns the batch's per-sample losses and target items; the stepper weights them, takes
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
  (``benchmarks/fairness_speed.py`` prints the ratio), and its first step is plain. The
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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import torch

from trustrec.config import NonNegativeFloat, PositiveFloat, UnitInterval, typed_config

#: ``closure() -> (losses, targets)``: per-sample losses ``(n,)`` and target items ``(n,)``
#: (0-based; ``-1`` for a sample with no target item, e.g. a sampled negative of a
#: pointwise loss, which keeps weight 1 and the plain loss) of one mini-batch at the
#: model's current parameters.
BatchLosses = Callable[[], tuple[torch.Tensor, torch.Tensor]]

OPTIMIZERS = ("adam", "sam", "eisam")
REWEIGHTS = ("none", "ips", "logit_adjust")


@typed_config
class TailOptions:
    """The long-tail options of a model trained by the shared stepper (a model's config
    extends this one).

    Attributes:
        optimizer: ``"adam"``, or Adam under ``"sam"`` / ``"eisam"`` (item-wise SAM).
        rho: SAM / EISAM radius.
        eisam_lambda: EISAM's ``λ`` (share of a tail item's loss made sharpness-aware).
        eisam_gamma: EISAM's ``γ`` of the frequency weight ``(1 − π_i)^γ``.
        reweight: ``"none"``, ``"ips"`` (inverse-popularity sample weights) or
            ``"logit_adjust"`` (popularity offsets on the training logits).
        reweight_power: the IPS exponent or the logit adjustment's ``τ``.
    """

    optimizer: Literal["adam", "sam", "eisam"] = "adam"
    rho: PositiveFloat = 0.05
    eisam_lambda: UnitInterval = 1.0
    eisam_gamma: NonNegativeFloat = 1.0
    reweight: Literal["none", "ips", "logit_adjust"] = "none"
    reweight_power: NonNegativeFloat = 1.0


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
        reweight: ``"none"``, ``"ips"`` or ``"logit_adjust"``.
        power: IPS exponent or the logit adjustment's ``τ``.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer,
                 item_counts: np.ndarray, optimizer: str = "adam", rho: float = 0.05,
                 eisam_lambda: float = 1.0, eisam_gamma: float = 1.0,
                 reweight: str = "none", power: float = 1.0) -> None:
        if optimizer not in OPTIMIZERS or reweight not in REWEIGHTS:
            raise ValueError(f"optimizer {optimizer!r} / reweight {reweight!r}: expected "
                             f"one of {OPTIMIZERS} / {REWEIGHTS}")
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
        relative = counts / counts.max().clamp(min=1.0)
        self.sharp = (float(eisam_lambda) * (1 - relative) ** float(eisam_gamma)).float()
        self._ascent: list[torch.Tensor] | None = None

    @classmethod
    def from_config(cls, params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer,
                    item_counts: np.ndarray, cfg: TailOptions) -> Stepper:
        """The stepper of a model config that extends :class:`TailOptions`."""
        return cls(params, opt, item_counts, cfg.optimizer, cfg.rho, cfg.eisam_lambda,
                   cfg.eisam_gamma, cfg.reweight, cfg.reweight_power)

    @staticmethod
    def _per_item(table: torch.Tensor, targets: torch.Tensor, default: float
                  ) -> torch.Tensor:
        """``table[target]`` per sample, ``default`` where the target is ``-1``."""
        return torch.where(targets >= 0, table[targets.clamp(min=0)],
                           torch.tensor(default, dtype=table.dtype))

    def _weighted(self, losses: torch.Tensor, targets: torch.Tensor,
                  extra: torch.Tensor | None = None) -> torch.Tensor:
        w = (None if self.sample_weight is None
             else self._per_item(self.sample_weight, targets, 1.0))
        if extra is not None:
            w = extra if w is None else w * extra
        return (losses if w is None else losses * w).mean()

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
        losses, targets = closure()
        plain = float(losses.detach().mean())
        if self.kind == "adam":
            self._weighted(losses, targets).backward()
        elif self.kind == "sam":
            self._weighted(losses, targets).backward()
            eps = self._direction(self._grads())
            self.opt.zero_grad()
            self._shift(eps, 1.0)
            self._weighted(*closure()).backward()
            self._shift(eps, -1.0)
        else:
            c = self._per_item(self.sharp, targets, 0.0)
            self._weighted(losses, targets, 1 - c).backward()  # head part, at θ
            if self._ascent is None:
                self._ascent = [torch.zeros_like(p) for p in self.params]
            eps = self._ascent
            self._shift(eps, 1.0)
            before = self._grads()
            for p in self.params:
                p.grad = None
            losses2, targets2 = closure()
            self._weighted(losses2, targets2,
                           self._per_item(self.sharp, targets2, 0.0)).backward()
            tail = self._grads()
            self._shift(eps, -1.0)
            self._ascent = self._direction(tail)
            for p, g in zip(self.params, before, strict=True):
                if g is not None:  # a parameter no pass reached keeps grad None
                    p.grad = g if p.grad is None else p.grad + g
        self.opt.step()
        return plain
