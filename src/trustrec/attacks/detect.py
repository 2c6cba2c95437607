"""Standard shilling detectors, run on (polluted) training data, and how well they find
the polluted users; a distribution distance between clean and polluted sequences.

Detectors give every user a suspicion score (higher = more suspicious):

* ``pca`` (PCA-VarSelect, Mehta & Nejdl 2009): users are the variables. Each user's
  binary item profile is z-scored, and the top ``components`` principal components of
  the user × user covariance are taken. Attack profiles contribute least to them, so a
  user's suspicion is minus the sum of its squared loadings.
* ``degsim`` (DegSim, Chirita et al. 2005): the mean cosine similarity of a user's binary
  profile to its ``neighbours`` most similar users. Crafted profiles resemble each
  other, so a high DegSim is suspicious.

:func:`detection` scores a detector against the known polluted users: ROC AUC (0.5 = no
better than chance; undefined, NaN, without polluted users), and the precision and
recall of flagging the ``flag_share`` most suspicious users (a platform's alarm budget).
:func:`sequence_distance` is the exact optimal-transport (earth mover's) distance between
the clean and the polluted windows of the polluted users, embedded by the clean victim.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.extmath import randomized_svd

from trustrec.config import suggest
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, UnknownNameError
from trustrec.models.sequential import SequentialRecommender


def _binary(data: Dataset) -> sp.csr_matrix:
    m = data.to_csr()
    m.data[:] = 1.0
    return m


def pca_scores(data: Dataset, components: int = 3) -> np.ndarray:
    """PCA-VarSelect suspicion per user (see the module docstring)."""
    x = _binary(data).toarray()
    x = x - x.mean(1, keepdims=True)
    sd = x.std(1, keepdims=True)
    z = np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)   # (users, items)
    # the users' loadings on the top principal components = left singular vectors of z
    u, _, _ = randomized_svd(z, components, random_state=0)
    return -(u ** 2).sum(1)


def degsim_scores(data: Dataset, neighbours: int = 10, chunk: int = 2048) -> np.ndarray:
    """DegSim per user (see the module docstring), in chunks of users."""
    m = _binary(data)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    unit = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m
    out = np.zeros(data.n_users)
    k = min(neighbours, data.n_users - 1)
    for b in range(0, data.n_users, chunk):
        sim = (unit[b:b + chunk] @ unit.T).toarray()
        sim[np.arange(len(sim)), np.arange(b, b + len(sim))] = -np.inf   # not oneself
        if k > 0:
            out[b:b + len(sim)] = -np.partition(-sim, k - 1, axis=1)[:, :k].mean(1)
    return out


DETECTORS: dict[str, Callable[[Dataset], np.ndarray]] = {
    "pca": pca_scores, "degsim": degsim_scores}


def detect(name: str, data: Dataset) -> np.ndarray:
    """Suspicion per user index of the named detector."""
    if name not in DETECTORS:
        raise UnknownNameError(f"unknown detector {name!r}"
                               f"{suggest(name, sorted(DETECTORS))}")
    return DETECTORS[name](data)


def flagged(scores: np.ndarray, users: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` most suspicious of ``users`` (at least one)."""
    if not 0 < share <= 1:
        raise ConfigError(f"flag share must be in (0, 1], got {share}")
    n = max(1, round(share * len(users)))
    return users[np.argsort(-scores[users], kind="stable")[:n]]


def detection(scores: np.ndarray, polluted: np.ndarray, users: np.ndarray,
              flag_share: float = 0.05) -> dict[str, float]:
    """AUC, precision and recall of a detector's scores over ``users`` (the users with
    training data) against the ``polluted`` ones."""
    truth = np.isin(users, polluted)
    auc = float(roc_auc_score(truth, scores[users])) if 0 < truth.sum() < len(truth) \
        else float("nan")
    hit = np.isin(flagged(scores, users, flag_share), polluted).sum()
    return {"auc": auc, "precision": float(hit / max(1, round(flag_share * len(users)))),
            "recall": float(hit / truth.sum()) if truth.any() else float("nan")}


def sequence_distance(victim: SequentialRecommender, clean: torch.Tensor,
                      polluted: torch.Tensor) -> float:
    """Earth mover's distance between the victim's encodings of the clean and the
    polluted windows (uniform weights, Euclidean cost); 0 when nothing changed."""
    a = victim.encode(clean).double().numpy()
    b = victim.encode(polluted).double().numpy()
    if not len(a):
        return 0.0
    w = np.full(len(a), 1.0 / len(a))
    return float(ot.emd2(w, w, ot.dist(a, b, metric="euclidean")))
