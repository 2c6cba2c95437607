"""Output perturbation (the DP-style baseline) and the hide-table negative control.

The simplest attribute-privacy baseline, and the usual "differential privacy" comparison
of the attribute-unlearning papers: release ``E + N`` with ``N_ud ~ N(0, σ²)`` i.i.d.
instead of the trained user table ``E``. It needs no labels and protects every attribute
at once, at a utility cost that grows with σ.

Choices:
    * σ is given relative to the table's RMS entry, ``σ = sigma · sqrt(mean(E²))``, so the
      same ``sigma`` means the same signal-to-noise ratio on every model and dimension.
    * No privacy budget (ε, δ) is claimed: the sensitivity of a trained embedding to one
      user's attribute is unknown, so this is output perturbation in the style of the
      Gaussian mechanism, not a certified mechanism.
    * The attribute labels are checked like every protector's but not used.
    * The noise is drawn from ``trustrec.seeding.rng(seed, "output-noise")``.

:class:`HideTable` (``hide-table``) is a negative control for the audit, not a method: it
replaces the released user table with noise or zeros and keeps the item table.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from trustrec.config import PositiveFloat, typed_config
from trustrec.data.dataset import Dataset
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.base import PROTECTORS, user_table
from trustrec.privacy.posttrain import ProtectorBase
from trustrec.seeding import rng


@typed_config
class OutputNoiseConfig:
    """Output perturbation.

    Attributes:
        sigma: noise standard deviation relative to the table's RMS entry (> 0).
    """

    sigma: PositiveFloat = 0.5


@PROTECTORS.register("output-noise")
class OutputNoise(ProtectorBase):
    """Adds seeded Gaussian noise ``N(0, (sigma · RMS(E))²)`` to the released user table.

    ``protect(model, train, labels, seed=...)`` returns a copy of the model with the noisy
    table; ``fit_info_["protection"]`` records ``sigma``, the absolute noise scale
    (``noise_std``) and the table's RMS entry.
    """

    name = "output-noise"
    Config = OutputNoiseConfig

    def _protect(self, model: EmbeddingRecommender, train: Dataset,
                 labels: dict[str, np.ndarray], *, seed: int, progress: bool
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        table = user_table(model).astype(np.float64)
        rms = float(np.sqrt(np.mean(table * table)))
        std = self.config.sigma * rms
        noise = rng(seed, "output-noise").standard_normal(table.shape) * std
        return (torch.from_numpy((table + noise).astype(np.float32)),
                {"noise_std": std, "table_rms": rms})


HideMode = Literal["random", "zero"]
#: Modes of :class:`HideTable`.


@typed_config
class HideTableConfig:
    """The hide-table negative control.

    Attributes:
        mode: ``"random"`` releases i.i.d. Gaussian rows with the original table's RMS
            entry (no relation to any user); ``"zero"`` releases a table of zeros.
    """

    mode: HideMode = "random"


@PROTECTORS.register("hide-table")
class HideTable(ProtectorBase):
    """Negative control: hides the released user table and nothing else.

    Replaces every row of the released user table with noise (``mode="random"``, seeded
    from ``trustrec.seeding.rng(seed, "hide-table")``) or zeros (``mode="zero"``), and
    leaves the item table, which was trained on the users' interactions, as it was. It is
    not a privacy method: recommendations become meaningless (every user scores items
    with a random or zero vector). It exists to test the audit: on the ``released`` view
    it reads as perfectly private (the attackers are at chance), on the ``fold_in`` view
    (users re-derived from the item table and their histories,
    :func:`trustrec.privacy.attack.view_features`) the attribute is as readable as before
    protection. An audit that only looks at the released table cannot tell this control
    from a real method. The labels are checked like every protector's but not used.
    """

    name = "hide-table"
    Config = HideTableConfig

    def _protect(self, model: EmbeddingRecommender, train: Dataset,
                 labels: dict[str, np.ndarray], *, seed: int, progress: bool
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        table = user_table(model).astype(np.float64)
        if self.config.mode == "zero":
            return torch.zeros(table.shape, dtype=torch.float32), {"mode": "zero"}
        rms = float(np.sqrt(np.mean(table * table)))
        noise = rng(seed, "hide-table").standard_normal(table.shape) * rms
        return torch.from_numpy(noise.astype(np.float32)), {"mode": "random",
                                                              "table_rms": rms}
