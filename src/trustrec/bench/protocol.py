"""Evaluation protocols: trustrec's own (the default) and CURE4Rec's, side by side.

A protocol fixes how data are prepared and how utility and fairness are scored, so that a
grid can reproduce a paper's setting without changing the toolkit's defaults.

* ``trustrec`` (default): the dataset as loaded, a per-user 80/10/10 random split with
  early stopping on the validation rows only, NDCG with the ideal DCG truncated at
  ``min(|relevant|, k)`` (the standard definition), A-IGF as an absolute gap.
* ``cure4rec``: CURE4Rec's released code (Chen et al., NeurIPS 2024 D&B; see the notes in
  :mod:`trustrec.models.bcemf`): users and items with fewer than 5 interactions filtered out
  (ML-100K: 943 × 1,349, 99,287 rows, as the paper's table), a per-user 80/20 split with
  *no* validation rows (models run their configured epochs: the released code stopped
  early on the *test* split, which trustrec never does), NDCG@k normalised by the DCG of
  *all* relevant items (untruncated: a user with more than k test items can never reach
  1), A-IGF signed (active minus inactive). Its model is BCE-MF (:mod:`~trustrec.models.
  bcemf`, the code's "WMF"). Completeness is still trustrec's suite, since the paper's MIO
  oracle is not specified.

Why the default differs: a test split that steers training (early stopping) inflates every
figure; an untruncated ideal DCG mixes how many test items a user has into its score, so
groups of users with different activity (A-IGF) are compared on different scales.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustrec.config import suggest
from trustrec.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    """How a grid prepares data and scores utility and fairness.

    Attributes:
        name: the protocol's name.
        split_ratios: train / validation / test shares it requires (None: the spec's).
        k_core: drop users and items with fewer rows than this, repeatedly (0: none).
        ndcg_ideal: the ideal DCG of NDCG (``"truncated"`` / ``"untruncated"``).
        a_igf: the headline A-IGF (``"absolute"`` or ``"signed"``); both are stored.
    """

    name: str
    split_ratios: tuple[float, float, float] | None = None
    k_core: int = 0
    ndcg_ideal: str = "truncated"
    a_igf: str = "absolute"


PROTOCOLS: dict[str, Protocol] = {
    "trustrec": Protocol("trustrec"),
    "cure4rec": Protocol("cure4rec", split_ratios=(0.8, 0.0, 0.2), k_core=5,
                         ndcg_ideal="untruncated", a_igf="signed"),
}

#: CURE4Rec's published figures on MovieLens-100K with its "WMF" (BCE-MF), for the report:
#: NDCG@20 of each method, and MIO (its membership oracle; lower is more complete).
CURE4REC_ML100K_WMF: dict[str, dict[str, float | str]] = {
    "ndcg@20": {"learn": 0.3215, "retrain": 0.2872, "sisa": 0.2092, "receraser": 0.2208,
                "ultrare": 0.2354},
    "mio": {"learn": 0.722, "retrain": "≈ 0.54", "scif": "0.56–0.60"},
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``.

    Raises:
        ConfigError: an unknown name (with the closest known one).
    """
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol: unknown protocol {name!r}"
                          f"{suggest(str(name), sorted(PROTOCOLS))}")
    return PROTOCOLS[name]
