"""Fixtures shared by the attribute-privacy tests: one BPR-MF trained on real ML-100K.

The model is BPR-MF with its default config (dim 64, early stopping on validation: about
5 s), the one the privacy grid and ``trustrec train`` use, so the effect tests hold for
the model people actually train. It is trained once per test session; tests that change
it work on copies (``with_user_table`` / ``copy_model``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import trustrec.privacy  # noqa: F401  (registers the protectors and defenses)
from trustrec.evaluate.ranking import ndcg_at
from trustrec.models.base import EmbeddingRecommender, make_model
from trustrec.privacy.attack import audit_embeddings
from trustrec.privacy.base import label_share_users, labels_for, user_table

#: The BPR-MF config of the privacy tests: the defaults (test NDCG@20 0.284 on the seed-0
#: split).
PRIVACY_MODEL: dict[str, Any] = {}
#: The attributes of ML-100K that the tests attack.
ATTRIBUTES: tuple[str, ...] = ("gender", "age", "occupation")


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Run the privacy tests with one torch / BLAS thread, as the privacy grid runs its
    cells (:func:`trustrec.bench.engine.single_threaded`): the tensors are small, and on a
    busy 2-core machine a second thread mostly waits (a 1 s PoT-AU run took 30 s)."""
    from trustrec.bench.engine import single_threaded

    with single_threaded():
        yield


@pytest.fixture(scope="session")
def ml100k_labels(ml100k_split) -> dict[str, np.ndarray]:
    """``{attribute: labels}`` of the ML-100K training split (gender, age, occupation)."""
    return labels_for(ml100k_split.train, list(ATTRIBUTES))


@pytest.fixture(scope="session")
def bpr_ml100k(ml100k_split) -> EmbeddingRecommender:
    """BPR-MF (:data:`PRIVACY_MODEL`) trained on the ML-100K split, seed 0. Do not modify."""
    return make_model("bpr", **PRIVACY_MODEL).fit(ml100k_split.train, ml100k_split.valid,
                                                  seed=0)


@pytest.fixture(scope="session")
def bpr_ml100k_test_ndcg(bpr_ml100k, ml100k_split) -> float:
    """Test NDCG@20 of :func:`bpr_ml100k` (full ranking, training items masked)."""
    return ndcg_at(bpr_ml100k, ml100k_split.train, ml100k_split.test, 20)


def copy_model(model: EmbeddingRecommender) -> EmbeddingRecommender:
    """A deep copy of a fitted model (its tensors are not shared)."""
    out = copy.copy(model)
    out.params_ = {k: v.detach().clone() for k, v in model.params_.items()}
    out.fit_info_ = copy.deepcopy(model.fit_info_)
    return out


@pytest.fixture(scope="session")
def bpr_gender_audit(bpr_ml100k, ml100k_labels):
    """The audit (lr, mlp, gbt; 5 folds, seed 0) of :func:`bpr_ml100k` for gender.

    Measured: balanced accuracy lr 0.683, mlp 0.646, gbt 0.650.
    """
    return audit_embeddings(user_table(bpr_ml100k), ml100k_labels["gender"],
                            attackers=("lr", "mlp", "gbt"), seed=0)



@pytest.fixture(scope="session")
def seen_half(ml100k_labels) -> np.ndarray:
    """The users whose labels a method sees in the effect tests: the grid's threat model
    (:func:`~trustrec.privacy.base.label_share_users`, share 0.5, seed 0; 472 of 943
    users), the protocol the defaults were tuned for (``benchmarks/tune_privacy.py``)."""
    return label_share_users(ml100k_labels, 0.5, seed=0)


@pytest.fixture(scope="session")
def bpr_seen_gender_leakage(bpr_ml100k, ml100k_labels, seen_half) -> float:
    """Leakage of the undefended table on the seen half for gender (measured 0.178)."""
    from trustrec.privacy.attack import leakage

    y = np.where(seen_half, ml100k_labels["gender"], -1)
    return leakage(audit_embeddings(user_table(bpr_ml100k), y, seed=0))
