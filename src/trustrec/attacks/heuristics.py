"""The CREAT paper's baselines, under its one threat model (:mod:`trustrec.attacks.base`).

Each chooses ``k`` positions per window where the target is written; they differ in which
transitions the target joins:

* ``none`` ("Pure"): no change; the control every attack metric must separate from.
* ``random``: ``k`` positions drawn uniformly among the window's items.
* ``popular``: positions right after the window's most popular items (popularity as
  counted in the victim's stored training windows, what a white-box attacker reads), so
  the target follows popular items, as the Popular attack pairs the target with popular
  filler items. The paper's baselines append filler sequences; under its replace-``k``
  threat model the filler is the user's own popular items.
* ``simalter`` (Yue et al., 2021): positions right after the window's items most similar
  to the target (cosine of the victim's item embeddings): the target joins the
  semantically associated contexts SimAlter builds. Yue et al. alternate the target with
  similar items they add; here the similar items are the user's own.
* ``replace`` (Yue et al., 2022): the gradient of the attack loss (cross-entropy of the
  target at every position of the window, through the victim) with respect to each
  position's input embedding gives a first-order estimate of how much writing the target
  there lowers the loss, ``(e_{v*} − e_{v_t})ᵀ ∇_{e_t} L``; the ``k`` positions with the
  largest decrease are replaced (the paper's "fragile items by gradients"; the candidate
  is the target, as the threat model has one target).

Ties are broken at random (seeded). Positions ``t`` whose predecessor is padding score
lowest for ``popular`` and ``simalter``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trustrec.attacks.base import ATTACKS, Attack
from trustrec.config import typed_config
from trustrec.models.sequential import SequentialRecommender
from trustrec.seeding import rng


@typed_config
class NoOptions:
    """This attack has no options."""


def top_positions(gain: np.ndarray, real: np.ndarray, k: int, gen: np.random.Generator
                  ) -> np.ndarray:
    """``(n, k)`` columns of the ``k`` largest ``gain`` among real items, ties at random."""
    if k == 0:
        return np.zeros((len(gain), 0), dtype=np.int64)
    key = np.where(real, gain, -np.inf)
    noise = gen.random(key.shape)
    order = np.lexsort((noise, -key), axis=1)  # by gain (desc), then a random tie key
    return order[:, :k]


def predecessor_score(windows: torch.Tensor, item_score: np.ndarray) -> np.ndarray:
    """``item_score`` of the item before each position (``-inf`` after padding or at the
    first column)."""
    w = windows.numpy()
    prev = np.full(w.shape, -np.inf)
    before = w[:, :-1]
    prev[:, 1:] = np.where(before > 0, item_score[np.maximum(before - 1, 0)], -np.inf)
    return prev


@ATTACKS.register("none")
class Pure(Attack):
    """No attack (the papers' "Pure"): the negative control."""

    name = "none"
    Config = NoOptions

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """No positions."""
        return np.zeros((len(windows), 0), dtype=np.int64)


@ATTACKS.register("random")
class RandomAttack(Attack):
    """Uniformly random positions (see the module docstring)."""

    name = "random"
    Config = NoOptions

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """``k`` uniform positions per window."""
        gen = rng(seed, self.name, target)
        return top_positions(np.zeros(windows.shape), windows.numpy() > 0, k, gen)


@ATTACKS.register("popular")
class PopularAttack(Attack):
    """The target after the window's most popular items (see the module docstring)."""

    name = "popular"
    Config = NoOptions

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """Positions after the most popular predecessors."""
        counts = item_popularity(victim)
        gain = predecessor_score(windows, counts.astype(np.float64))
        return top_positions(gain, windows.numpy() > 0, k, rng(seed, self.name, target))


def item_popularity(victim: SequentialRecommender) -> np.ndarray:
    """How often each item occurs in the victim's stored training windows (what the
    attacker sees of the training data)."""
    hist = victim.params_["history"].numpy().ravel()
    return np.bincount(hist[hist > 0] - 1, minlength=victim.n_items_)


@ATTACKS.register("simalter")
class SimAlterAttack(Attack):
    """The target after the items most similar to it (see the module docstring)."""

    name = "simalter"
    Config = NoOptions

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """Positions after the predecessors nearest the target in embedding space."""
        emb = victim.item_embeddings().astype(np.float64)
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        gain = predecessor_score(windows, unit @ unit[target])
        return top_positions(gain, windows.numpy() > 0, k, rng(seed, self.name, target))


@ATTACKS.register("replace")
class ReplaceAttack(Attack):
    """Gradient-guided substitution (see the module docstring)."""

    name = "replace"
    Config = NoOptions

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """The ``k`` positions whose substitution lowers the attack loss most (first
        order)."""
        gain = -substitution_gain(victim, windows, target)
        return top_positions(gain, windows.numpy() > 0, k, rng(seed, self.name, target))


def substitution_gain(victim: SequentialRecommender, windows: torch.Tensor, target: int
                      ) -> np.ndarray:
    """First-order change of the attack loss when each position's item becomes the
    target: ``(e_{v*} − e_{v_t})ᵀ ∇_{e_t} L`` per window column, ``(n, max_len)`` (0 where
    the model does not read the column).

    ``L = −log p(v* | window)``, the cross-entropy of the target as the next item after
    each window; the gradient is taken through the victim's network at its input
    embedding lookup.
    """
    net = victim.trained_network()
    captured: list[torch.Tensor] = []

    def keep(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        out.retain_grad()  # each network looks its input up once per forward
        captured.append(out)

    handle = net.item.register_forward_hook(keep)
    try:
        hidden = victim.encode(windows, net)
        (-torch.log_softmax(net.logits(hidden), dim=-1)[:, target].sum()).backward()
    finally:
        handle.remove()
    emb = torch.cat([c.detach() for c in captured])
    grad = torch.cat([c.grad for c in captured])
    per_input = ((net.item.weight[target + 1].detach() - emb) * grad).sum(-1)
    shift = victim.input_shift  # columns the model input drops from the window's start
    gain = torch.zeros(windows.shape)
    gain[:, shift:] = per_input[:, :windows.shape[1] - shift]
    return gain.numpy()
