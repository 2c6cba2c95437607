"""Helpers shared by the tests of the approximate methods (SCIF, IFRU, fine-tuning, NegGrad).

A :class:`Case` is one forget request on the real ML-100K split, with the retrained
reference (a fresh fit on the remaining rows with the unlearner's model seed) and the
original model's figures, so a test can say how far an approximate method moved towards
retraining.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.evaluate.completeness import forgotten_item_percentile
from trustrec.evaluate.ranking import ndcg_at
from trustrec.models import make_model
from trustrec.seeding import child_seed
from trustrec.unlearn import ForgetRequest, make_unlearner


def fitted(method: str, model: str, model_cfg: dict[str, Any], split, seed: int = 0,
           **config: Any):
    """A fitted unlearner on the split (train + valid)."""
    return make_unlearner(method, model, model_cfg, **config).fit(split.train, split.valid,
                                                                  seed=seed)


@dataclass
class Case:
    """One request against one fitted unlearner, and the retrained reference."""

    base: Any  # the fitted unlearner (never modified: forget on copies)
    request: ForgetRequest
    split: Any

    @cached_property
    def removed_mask(self) -> np.ndarray:
        return self.request.row_mask(self.split.train)

    @cached_property
    def removed(self) -> Dataset:
        return self.split.train.select(self.removed_mask)

    @cached_property
    def remaining(self) -> Dataset:
        return self.split.train.select(~self.removed_mask)

    @cached_property
    def retained_users(self) -> np.ndarray:
        return np.setdiff1d(self.split.train.active_users(), np.unique(self.removed.users))

    @cached_property
    def retrained(self):
        valid = self.split.valid.select(~self.request.match_rows(self.split.valid))
        return make_model(self.base.model, **self.base.model_config).fit(
            self.remaining, valid, seed=child_seed(self.base.seed_, "model"))

    def forget(self, **overrides: Any):
        """A copy of the unlearner (config fields overridden) after forgetting."""
        u = copy.deepcopy(self.base)
        if overrides:
            u.config = type(u.config)(**{**u.config.__dict__, **overrides})
        report = u.forget(self.request)
        return u, report

    def pct(self, model) -> float:
        """Mean percentile of the forgotten rows in their users' rankings (0 = top)."""
        return float(np.nanmean(forgotten_item_percentile(model, self.removed,
                                                          self.remaining)))

    def ndcg(self, model) -> float:
        """Test NDCG@20 of the retained users (remaining training items masked)."""
        return ndcg_at(model, self.remaining, self.split.test.restrict_users(
            self.retained_users), 20)

    @cached_property
    def pct_original(self) -> float:
        return self.pct(self.base)

    @cached_property
    def pct_retrained(self) -> float:
        return self.pct(self.retrained)

    @cached_property
    def ndcg_original(self) -> float:
        return self.ndcg(self.base)

    def gap_closed(self, model) -> float:
        """Share of the original model's percentile gap to retraining that ``model`` closes
        (1: as forgotten as after retraining, 0: not moved, > 1: overshoot)."""
        return (self.pct(model) - self.pct_original) / (self.pct_retrained - self.pct_original)
