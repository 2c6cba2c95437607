"""BERT4Rec: bidirectional transformer trained by the Cloze task (Sun et al., CIKM 2019).

The last ``max_len`` items of a history are embedded (item embedding plus a learned
position embedding, layer norm, dropout; Eq. 1 and §3.5) and passed through ``blocks``
transformer layers that attend in *both* directions over the real items (post-norm, GELU
feed-forward of ``4 · dim``: Eq. 2–5). Training hides a share ``mask_prob`` of the items
of each window behind a ``[mask]`` token and predicts them (Eq. 8, the Cloze objective);
the output head is the paper's Eq. 7, ``softmax(GELU(h Wᴾ + bᴾ) Eᵀ + bᴼ)`` with a layer
norm after the GELU (as its released code) and the input item embedding ``E`` shared. To
recommend, ``[mask]`` is appended to the history (its oldest item dropped when full) and
the state at the mask scores every item (§3.6).

Histories, the training loop and scoring are every sequential model's
(:mod:`trustrec.models.sequential`); this model only changes what a training batch and a
scoring input are (:meth:`BERT4Rec.training_batch`, :meth:`BERT4Rec.model_input`).

Choices where the paper is silent or that differ from it (each a config field):

* ``mask_prob = 0.2`` (the paper's value for ML-1M and ML-20M); a window with no item
  drawn has its last item masked, so every window trains. ``last_share = 0.1`` of the
  windows mask only their last item: the paper's "samples that only mask the last item"
  (§3.6), whose share it does not give.
* Loss: full-softmax cross-entropy over the masked positions (the paper's), or BCE with one
  sampled negative (``loss = "bce"``).
* ``dim = 64``, 2 blocks, 2 heads, dropout 0.1 (the paper's), ``max_len = 50`` (the
  paper's 200 for ML-1M; MovieLens-100K histories are shorter), Adam lr 1e-3 with no
  warm-up or decay (the paper's lr 1e-4 with linear decay trains far more steps than
  early stopping allows here).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trustrec.config import PositiveInt, typed_config
from trustrec.models.base import MODELS
from trustrec.models.sequential import (
    Dropout,
    SequenceNet,
    SequentialConfig,
    SequentialRecommender,
    check_heads,
    init_weights,
)


@typed_config
class BERT4RecConfig(SequentialConfig):
    """Hyper-parameters of BERT4Rec (besides :class:`SequentialConfig`'s).

    Attributes:
        blocks: transformer layers.
        heads: attention heads (must divide ``dim``).
        mask_prob: share of a training window's items hidden behind ``[mask]``.
        last_share: share of training windows that mask only their last item.
    """

    dropout: Dropout = 0.1
    blocks: PositiveInt = 2
    heads: PositiveInt = 2
    mask_prob: Dropout = 0.2
    last_share: Dropout = 0.1

    def __post_init__(self) -> None:
        from trustrec.errors import ConfigError

        check_heads(self)
        if self.mask_prob == 0:
            raise ConfigError("BERT4RecConfig: mask_prob must be above 0 (nothing to "
                              "predict otherwise)")


class BERT4RecNet(SequenceNet):
    """Embeddings (row 0 = padding, row ``n_items + 1`` = ``[mask]``), bidirectional
    transformer layers, the GELU output head with an output bias."""

    def __init__(self, n_items: int, cfg: BERT4RecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 2, cfg.dim, padding_idx=0)
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(),
                                  nn.LayerNorm(cfg.dim))
        self.bias = nn.Parameter(torch.zeros(n_items))

    @property
    def n_items(self) -> int:
        """Items scored (the table also holds the padding and the mask rows)."""
        return self.item.num_embeddings - 2

    @property
    def mask_token(self) -> int:
        """The ``[mask]`` token's index."""
        return self.item.num_embeddings - 1

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Output-head states ``(b, L, d)``; every position reads every real item."""
        pos = torch.arange(seq.shape[1], device=seq.device)
        x = self.drop(self.norm(self.item(seq) + self.position(pos)))
        return self.head(self.encoder(x, src_key_padding_mask=seq == 0))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Eq. 7: the shared embedding's scores plus the output bias."""
        return super().logits(hidden) + self.bias

    def pair_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Eq. 7 for the given items only."""
        return super().pair_logits(hidden, items) + self.bias[items - 1]


@MODELS.register("bert4rec")
class BERT4Rec(SequentialRecommender):
    """BERT4Rec (see the module docstring).

    ``params_``: ``item.weight`` ``(n_items + 2, dim)`` (row 0 = padding, the last row =
    ``[mask]``), ``position.weight``, the encoder's, the head's and ``bias``, and
    ``history``.
    """

    name = "bert4rec"
    Config = BERT4RecConfig
    window_extra = 0  # a window is the last max_len items; masked ones are the targets
    input_shift = 1  # scoring drops the oldest item to append [mask]

    def network(self, n_items: int) -> BERT4RecNet:
        """A freshly initialised network (Xavier-normal linear and embedding weights)."""
        net = BERT4RecNet(n_items, self.config)
        net.apply(init_weights)
        return net

    def training_batch(self, windows: torch.Tensor, gen: np.random.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The Cloze task: items hidden behind ``[mask]`` are the targets (see the module
        docstring for how positions are drawn)."""
        cfg = self.config
        real = (windows > 0).numpy()
        hide = (gen.random(real.shape) < cfg.mask_prob) & real
        only_last = gen.random(len(real)) < cfg.last_share
        hide[only_last] = False
        empty = ~hide.any(axis=1)  # only-last windows and windows with nothing drawn
        hide[empty, -1] = True
        hide_t = torch.from_numpy(hide)
        x = windows.masked_fill(hide_t, self.n_items_ + 1)
        return x, windows * hide_t

    def model_input(self, history: torch.Tensor) -> torch.Tensor:
        """The history's last ``max_len - 1`` items followed by ``[mask]``."""
        mask = torch.full((len(history), 1), self.n_items_ + 1, dtype=history.dtype,
                          device=history.device)
        return torch.cat([history[:, 1:], mask], dim=1)
