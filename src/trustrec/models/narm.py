"""NARM: neural attentive session-based recommendation (Li et al., CIKM 2017).

A GRU encoder reads the history's item embeddings (dropout). At position ``t`` the
*global* encoder is the GRU state ``h_t``; the *local* encoder attends over the states so
far, ``c_t = Σ_{j<=t} α_tj h_j`` with ``α_tj = vᵀ σ(A₁ h_t + A₂ h_j)`` (Eq. 6–7: unnormalised
sigmoid attention, not a softmax). The session representation ``[h_t; c_t]`` (dropout)
is mapped by the bilinear decoder ``B`` (Eq. 9) to the item space, and every item is
scored as ``embᵢᵀ B [h_t; c_t]``, the embedding shared with the input as in the paper.
Training, histories and scoring are every sequential model's
(:mod:`trustrec.models.sequential`).

Where this departs from the paper (and why):

* The paper encodes a session once, at its end, and trains on every prefix of the
  sessions as a separate example. Here every position of a user's history predicts the
  next item in one pass: the local attention of position ``t`` is masked to ``j <= t``
  (and to real items), which gives each prefix exactly the paper's representation.
* Loss: full-softmax cross-entropy, as the paper (its softmax over all items), or BCE
  with a sampled negative.
* ``dim = 64`` (the paper's 50), ``hidden = 100`` (the paper's), dropout 0.25 on the
  embeddings and 0.5 on the representation (the paper's), Adam lr 1e-3 (the paper's). On
  MovieLens-100K, leave-last-out, full ranking: NDCG@10 0.0885 / HR@10 0.175 (seed 0, 100
  epochs, 467 s on 2 cores: the prefix attention is ``O(L²)`` per sequence).
"""

from __future__ import annotations

import torch
from torch import nn

from trustrec.config import PositiveInt, typed_config
from trustrec.models.base import MODELS
from trustrec.models.sequential import (
    Dropout,
    SequenceNet,
    SequentialConfig,
    SequentialRecommender,
    init_weights,
)


@typed_config
class NARMConfig(SequentialConfig):
    """Hyper-parameters of NARM (besides :class:`SequentialConfig`'s, whose ``dropout``
    is the embedding dropout here).

    Attributes:
        hidden: GRU units (and attention size).
        layers: stacked GRU layers.
        context_dropout: dropout on the representation ``[h_t; c_t]``.
    """

    dropout: Dropout = 0.25
    hidden: PositiveInt = 100
    layers: PositiveInt = 1
    context_dropout: Dropout = 0.5


class NARMNet(SequenceNet):
    """Embedding, GRU, causal local attention, bilinear decoder."""

    def __init__(self, n_items: int, cfg: NARMConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.a1 = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.a2 = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.v = nn.Linear(cfg.hidden, 1, bias=False)
        self.context_drop = nn.Dropout(cfg.context_dropout)
        self.b = nn.Linear(2 * cfg.hidden, cfg.dim, bias=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Item-space representations ``(b, L, dim)`` of every prefix."""
        h, _ = self.gru(self.drop(self.item(seq)))                       # (b, L, H)
        length = seq.shape[1]
        # α[b, t, j] = vᵀ σ(A1 h_t + A2 h_j), kept for real items j <= t
        alpha = self.v(torch.sigmoid(self.a1(h).unsqueeze(2)
                                     + self.a2(h).unsqueeze(1))).squeeze(-1)  # (b, L, L)
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=seq.device))
        keep = causal.unsqueeze(0) & (seq > 0).unsqueeze(1)
        local = (alpha * keep).bmm(h)                                    # (b, L, H)
        return self.b(self.context_drop(torch.cat([h, local], dim=-1)))


@MODELS.register("narm")
class NARM(SequentialRecommender):
    """NARM (see the module docstring).

    ``params_``: ``item.weight`` ``(n_items + 1, dim)`` (row 0 = padding), the GRU's, the
    attention's (``a1``, ``a2``, ``v``) and the decoder's (``b``) tensors, and ``history``.
    """

    name = "narm"
    Config = NARMConfig

    def network(self, n_items: int) -> NARMNet:
        """A freshly initialised network (Xavier-normal embedding and linear layers; the
        GRU keeps torch's uniform initialisation)."""
        net = NARMNet(n_items, self.config)
        net.apply(init_weights)
        return net
