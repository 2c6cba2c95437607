"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A user is the sequence of items it interacted with, oldest first. The model embeds the last
``max_len`` items (item embedding ``× √d`` plus a learned position embedding, dropout),
passes them through ``blocks`` causal self-attention blocks (layer-normed, see below; a
point-wise two-layer feed-forward with ReLU, dropout on both; padded positions zeroed
after each block, as the paper's timeline mask) and a final layer norm; the output at
position ``t`` scores every item as the dot product with the *shared* item embedding
table, i.e. the prediction of item ``t + 1``.

Training, histories and scoring are every sequential model's
(:mod:`trustrec.models.sequential`): every position predicts the next item, by full-softmax
cross-entropy (default) or the paper's binary cross-entropy with one sampled negative
(``loss = "bce"``; a negative may be an item the user has seen).

Choices where the paper is silent or that differ from it (each a config field):

* ``loss = "ce"`` by default (see above); ``"bce"`` is the paper's.
* Blocks as the authors' released code: layer norm first, and each residual adds the
  *normed* input (``q = LN(x); x = LN(q + Attn(q, x, x)); x = x + FFN(x)``), where the
  paper's Eq. (4)–(5) figure reads as post-norm; dropout 0.2 (the paper's ML-1M value),
  d = 64, 2 blocks, 1 head.
* ``max_len = 50`` (RecBole's default; the paper uses 200 for ML-1M, 50 for sparser data):
  on MovieLens-100K, leave-last-out, it reaches NDCG@10 0.0987 / HR@10 0.182 (seed 0, 65
  epochs, 69 s on 2 cores); shorter histories are left-padded.
* Early stopping on validation NDCG@20 (the paper reports a fixed number of steps).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trustrec.config import PositiveInt, typed_config
from trustrec.models.base import MODELS
from trustrec.models.sequential import (
    SequenceNet,
    SequentialConfig,
    SequentialRecommender,
    check_heads,
    init_weights,
)


@typed_config
class SASRecConfig(SequentialConfig):
    """Hyper-parameters of SASRec (besides :class:`SequentialConfig`'s).

    Attributes:
        blocks: self-attention blocks.
        heads: attention heads (must divide ``dim``).
    """

    blocks: PositiveInt = 2
    heads: PositiveInt = 1

    def __post_init__(self) -> None:
        check_heads(self)


class _Block(nn.Module):
    """One causal self-attention block with a point-wise feed-forward (see the module
    docstring for where the norms sit)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor
                ) -> torch.Tensor:
        q = self.attn_norm(x)
        a, _ = self.attn(q, x, x, attn_mask=causal, need_weights=False)
        x = self.ffn_norm(q + a)  # as the released code: residuals of the normed inputs
        return (x + self.ffn(x)) * keep


class SASRecNet(SequenceNet):
    """Item and position embeddings, causal blocks, a final norm."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads, cfg.dropout)
                                    for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-8)
        self.scale = math.sqrt(cfg.dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(b, L, d)``; position ``t`` attends to positions ``<= t``."""
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).to(torch.float32)
        pos = torch.arange(length, device=seq.device)
        x = self.drop(self.item(seq) * self.scale + self.position(pos)) * keep
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device),
                            diagonal=1)
        for block in self.blocks:
            x = block(x, causal, keep)
        return self.norm(x)


@MODELS.register("sasrec")
class SASRec(SequentialRecommender):
    """SASRec (see the module docstring).

    ``params_``: ``item.weight`` ``(n_items + 1, dim)`` (row 0 = padding),
    ``position.weight``, the blocks' and the final norm's tensors, and ``history``.
    """

    name = "sasrec"
    Config = SASRecConfig

    def network(self, n_items: int) -> SASRecNet:
        """A freshly initialised SASRec network (Xavier-normal linear and embedding
        weights)."""
        net = SASRecNet(n_items, self.config)
        net.apply(init_weights)
        return net
