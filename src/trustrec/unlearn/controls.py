"""Negative controls: methods that do not forget, which every completeness verdict must catch.

A completeness metric that a do-nothing method passes is worthless. Two controls ship as
registered methods so that every benchmark can run them beside the real methods, and the
tests assert that the completeness suite (:mod:`trustrec.evaluate.suite`) reads both as
*not* forgotten on real data:

* ``noop``: removes the request's rows from its data (so the bookkeeping looks right) and
  leaves the model exactly as it was trained.
* ``reset-rows``: additionally zeroes the rows of the forgotten users (user requests) or
  items (item requests) in every user- or item-indexed parameter table. It hides the
  obvious trace, the forgotten entity's own row, and nothing else: the other side of the
  model still carries what it learnt from the forgotten rows. A score-row attack alone is
  fooled by it; the fold-in attack is not.

Neither is an unlearning method. Do not use them to honour a deletion request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trustrec.config import typed_config
from trustrec.data.dataset import Dataset
from trustrec.unlearn.base import UNLEARNERS
from trustrec.unlearn.retrain import Retrain


@typed_config
class ControlConfig:
    """The controls have no options."""


@UNLEARNERS.register("noop")
class NoOp(Retrain):
    """Negative control: forgets nothing (the model is the learned one)."""

    name = "noop"
    exact = False
    supports = frozenset({"user", "interaction", "item"})
    Config = ControlConfig

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        return [], {"control": "noop: the model is unchanged"}


@UNLEARNERS.register("reset-rows")
class ResetRows(Retrain):
    """Negative control: zeroes the forgotten users' (items') parameter rows, nothing else.

    A table belongs to a side when its name starts with ``"user"`` (``"item"``) and its
    leading dimension is the number of users (items): BPR's ``user`` / ``item`` /
    ``item_bias``, WMF's factors, LightGCN's base and propagated tables, NeuMF's GMF and MLP
    tables. An interaction request resets only the users (items) it leaves without a row.
    """

    name = "reset-rows"
    exact = False
    supports = frozenset({"user", "interaction", "item"})
    Config = ControlConfig

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        old = self.train_
        removed = old.select(train_removed)
        # a user request removes every row of its users; an item request every row of its
        # items: the side whose entities lost all their rows is the one to reset
        gone_u = np.setdiff1d(np.unique(removed.users), np.unique(train.users))
        gone_i = np.setdiff1d(np.unique(removed.items), np.unique(train.items))
        params = {k: v.clone() for k, v in self.model_.params_.items()}
        reset = []
        for side, ids, n in (("user", gone_u, old.n_users), ("item", gone_i, old.n_items)):
            if not len(ids):
                continue
            for name, t in params.items():
                if name.startswith(side) and t.ndim and t.shape[0] == n:
                    t[torch.from_numpy(ids)] = 0
                    reset.append(name)
        self.model_.params_ = params  # commit
        return [], {"control": "reset-rows", "tables_reset": reset,
                    "n_users_reset": len(gone_u), "n_items_reset": len(gone_i)}
