"""Fixtures and helpers shared by the unlearning tests: fast configs on real ML-100K."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import trustrec.unlearn  # noqa: F401  (registers the methods)
from trustrec.data.dataset import Dataset
from trustrec.unlearn import make_unlearner

#: Small model configs: quality is not the point here, exactness and bookkeeping are.
FAST_MODEL: dict[str, dict[str, Any]] = {
    "bcemf": {"epochs": 2, "dim": 8, "batch_size": 8192},
    "bpr": {"epochs": 3, "dim": 8},
    "wmf": {"epochs": 2, "dim": 8},
    "lightgcn": {"epochs": 2, "dim": 8, "n_layers": 2},
    "neumf": {"epochs": 2, "gmf_dim": 8, "mlp_dim": 8, "layers": (8,), "n_neg": 1,
              "batch_size": 32768},
    "sasrec": {"epochs": 2, "dim": 8, "max_len": 20, "eval_every": 1},
    "gru4rec": {"epochs": 2, "dim": 8, "hidden": 8, "max_len": 20, "eval_every": 1},
    "narm": {"epochs": 2, "dim": 8, "hidden": 8, "max_len": 20, "eval_every": 1},
    "bert4rec": {"epochs": 2, "dim": 8, "max_len": 20, "eval_every": 1},
    "llmrec": {"epochs": 1, "dim": 8, "max_len": 10, "batch_size": 512, "eval_every": 1},
}
#: A model without an entry above gets its defaults except for the number of epochs.
FAST_MODEL_DEFAULT: dict[str, Any] = {"epochs": 2}
#: Small method configs (a method without an entry gets its defaults).
FAST_METHOD: dict[str, dict[str, Any]] = {
    "sisa": {"n_shards": 3},
    "receraser": {"n_shards": 3, "pretrain_config": {"dim": 8, "epochs": 2},
                  "agg_epochs": 2, "agg_batch_size": 40000},
    "ultrare": {"n_shards": 3, "pretrain_config": {"dim": 8, "epochs": 2}},
    "laser": {"n_groups": 3, "embed_dim": 8},
    "scif": {"hessian_rows": 5000, "iterations": 3, "probes": 1, "negatives": 2},
    "ifru": {"hessian_rows": 5000, "iterations": 3, "probes": 1, "negatives": 2},
    "finetune": {"epochs": 1},
    "neggrad": {"steps": 2},
}


def model_config(model: str) -> dict[str, Any]:
    """The fast config of ``model``."""
    return dict(FAST_MODEL.get(model, FAST_MODEL_DEFAULT))


def build(method: str, model: str = "bpr", model_cfg: dict[str, Any] | None = None,
          **overrides: Any):
    """An unfitted unlearner with fast configs (``overrides`` go to the method config)."""
    return make_unlearner(method, model, model_cfg or model_config(model),
                          **{**FAST_METHOD.get(method, {}), **overrides})


def fit(method: str, split, model: str = "bpr", seed: int = 0,
        model_cfg: dict[str, Any] | None = None, **overrides: Any):
    """A fitted unlearner on the ML-100K split."""
    return build(method, model, model_cfg, **overrides).fit(split.train, split.valid, seed=seed)


def snapshot(u) -> dict[str, dict[str, torch.Tensor]]:
    """A deep copy of every model's parameters."""
    return {rel: {k: v.clone() for k, v in m.params_.items()}
            for rel, m in u.persistent_models().items()}


def params_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same names and bitwise-equal tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_snapshot(u, snap) -> bool:
    """The unlearner's models equal a :func:`snapshot`."""
    now = snapshot(u)
    return now.keys() == snap.keys() and all(params_equal(now[k], snap[k]) for k in now)


def reachable_datasets(obj: object) -> list[Dataset]:
    """Every Dataset reachable from ``obj`` through attributes, dicts, lists, tuples, sets."""
    found: list[Dataset] = []
    seen: set[int] = set()
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (str, bytes, int, float, np.ndarray, torch.Tensor)):
            continue
        seen.add(id(o))
        if isinstance(o, Dataset):
            found.append(o)
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend(vars(o).values())
    return found


@pytest.fixture(scope="session")
def split(ml100k_split):
    """The default ML-100K split (80/10/10, seed 0)."""
    return ml100k_split
