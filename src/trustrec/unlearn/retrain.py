"""Retraining from scratch: the exact reference every other unlearning method is judged by.

``fit`` trains one model on all training rows. ``forget`` removes the requested rows and
trains a new model from scratch on what remains, with the same derived seed
(``child_seed(seed, "model")``), so the result is bitwise the model one would have trained
had the forgotten rows never been there. It is the slowest method and the ground truth of
completeness: its cost is a full training run per request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trustrec.config import typed_config
from trustrec.data.dataset import Dataset
from trustrec.models.base import EmbeddingRecommender
from trustrec.seeding import child_seed
from trustrec.unlearn.base import UNLEARNERS, UnlearnerBase


@typed_config
class RetrainConfig:
    """Retraining has no options of its own (the model's config is separate)."""


@UNLEARNERS.register("retrain")
class Retrain(UnlearnerBase):
    """Exact unlearning by retraining the whole model on the remaining data.

    Choices:

    * The model seed is ``child_seed(seed, "model")`` for the first fit and every retrain,
      so retraining equals a fresh fit on the remaining rows (same row order, same seed).
    * Validation rows of forgotten users, items and pairs are removed too (see
      :class:`~trustrec.unlearn.base.UnlearnerBase`), and retraining early-stops on what
      remains, exactly as a fresh fit on the remaining split would.
    * Every accepted request triggers a retrain, even one that removes validation rows only.

    Attributes:
        model_: the current model.
    """

    name = "retrain"
    exact = True
    supports = frozenset({"user", "interaction", "item"})
    Config = RetrainConfig

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        super().__init__(model, model_config, config)
        self.model_: EmbeddingRecommender | None = None

    def model_seed(self) -> int:
        """The seed every (re)training of the model uses: ``child_seed(seed, "model")``."""
        return child_seed(self.seed_, "model")

    def _train(self, train: Dataset, valid: Dataset | None,
               progress: bool = False) -> EmbeddingRecommender:
        return self._new_model().fit(train, valid, seed=self.model_seed(), progress=progress)

    def _fit(self, progress: bool) -> dict[str, Any]:
        self.model_ = self._train(self.train_, self.valid_, progress)
        return {"model_seed": self.model_seed()}

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        self.model_ = self._train(train, valid)
        return ["full"], {}

    # ------------------------------------------------------------------ inference
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` of the current model."""
        self._check_fitted()
        return self.model_.score(self._check_users(users))

    def user_embeddings(self) -> np.ndarray:
        """The current model's user representations."""
        self._check_fitted()
        return self.model_.user_embeddings()

    def item_embeddings(self) -> np.ndarray:
        """The current model's item representations."""
        self._check_fitted()
        return self.model_.item_embeddings()

    # ------------------------------------------------------------------ persistence
    def persistent_models(self) -> dict[str, EmbeddingRecommender]:
        """``{"model": model_}``."""
        self._check_fitted()
        return {"model": self.model_}

    def restore_state(self, models: dict[str, EmbeddingRecommender],
                      arrays: dict[str, np.ndarray]) -> None:
        """Take the loaded ``model``."""
        self.model_ = models["model"]
