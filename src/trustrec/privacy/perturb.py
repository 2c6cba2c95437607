"""Output perturbation: Gaussian noise on the released user table (the DP-style baseline).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustrec.config import check_ranges
from trustrec.data.dataset import Dataset
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.base import PROTECTORS, user_table
from trustrec.privacy.posttrain import ProtectorBase
from trustrec.seeding import rng


@dataclass
class OutputNoiseConfig:
    """Output perturbation.

    Attributes:
        sigma: noise standard deviation relative to the table's RMS entry (> 0).
    """

    sigma: float = 0.5

    def __post_init__(self) -> None:
        check_ranges(self, positive=("sigma",))


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
