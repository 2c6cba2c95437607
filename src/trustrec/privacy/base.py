"""What every attribute-privacy method shares: labels, the released user table, registries.

* **Labels.** :func:`attribute_labels` turns a user-attribute column of a
  :class:`~trustrec.data.dataset.Dataset` into integer classes (``-1`` = unknown): gender
  as is, age binned into the seven MovieLens-1M age groups, occupation as is.
* **The released user table.** Attackers read, and post-training methods change, one
  table of the model: the user representation it scores with. Which table that is, the
  model says itself through the
  :class:`~trustrec.models.capabilities.ReleasesUserTable` capability (BPR-MF's factors,
  LightGCN's propagated embeddings, NeuMF's GMF embeddings, ...); methods never look at a
  model's name. :func:`user_table` reads it, :func:`with_user_table` returns a copy of the
  model with it replaced, and a model without the capability is a clear ConfigError
  naming the models that have it (models with the
  :class:`~trustrec.models.capabilities.PairScorer` capability also score a candidate
  table differentiably).
* **Whose labels a method sees.** Every method takes ``{attribute: labels}`` with ``-1``
  for unknown, and ``label_users``: the users whose labels it may use (the others count
  as unknown, :func:`restrict_labels`). The held-out threat model
  (:func:`label_share_users`) gives a method a seeded share of the labelled users and
  audits the attacker on the others (:func:`trustrec.privacy.attack.audit_model`'s
  ``users``).
* **Registries.** :data:`PROTECTORS` holds post-training methods (change a trained
  model's user table: PoT-AU, LEGO, output perturbation); :data:`DEFENSES` holds
  in-training defenses (train a model with a defensive objective: RAID, adversarial
  training). Both are found by name, like models and unlearners. Each method declares
  the capabilities it needs from a model (``needs``), checked before any work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from trustrec.config import build_config, name_list
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError, UnknownNameError
from trustrec.models.base import EmbeddingRecommender
from trustrec.models.capabilities import ReleasesUserTable, require
from trustrec.registry import Registry
from trustrec.seeding import rng

#: Age groups of MovieLens-1M (lower bounds): <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_BOUNDS: tuple[int, ...] = (0, 18, 25, 35, 45, 50, 56)
AGE_NAMES: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


# ---------------------------------------------------------------------------- labels
def attribute_labels(ds: Dataset, attribute: str) -> tuple[np.ndarray, list[str]]:
    """Integer class per user index for one user attribute, and the class names.

    ``age`` is binned into the MovieLens-1M age groups (:data:`AGE_BOUNDS`); ML-1M's own
    age codes (1, 18, 25, 35, 45, 50, 56) fall into the same groups. Any other attribute
    is categorical: its distinct values, sorted, are the classes. Missing or empty values
    get class ``-1`` (left out of attacks and losses).

    Args:
        ds: a dataset with a ``user_attributes`` table (one row per user index).
        attribute: a column of that table, e.g. ``"gender"``, ``"age"``, ``"occupation"``.

    Returns:
        ``(labels, classes)``: int64 labels of length ``ds.n_users`` and class names.

    Raises:
        UnknownNameError: the dataset has no such user attribute.
        DataFormatError: ``age`` values that are not numbers, or fewer than two classes.
    """
    table: pd.DataFrame = ds.user_attributes
    if attribute not in table.columns:
        have = ", ".join(map(str, table.columns)) or "none"
        raise UnknownNameError(f"dataset {ds.name!r} has no user attribute {attribute!r} "
                               f"(it has: {have})")
    col = table[attribute].reindex(range(ds.n_users))
    raw = col.astype("string").str.strip()
    known = raw.notna() & (raw != "")
    labels = np.full(ds.n_users, -1, dtype=np.int64)
    if attribute == "age":
        ages = pd.to_numeric(raw[known], errors="coerce")
        if ages.isna().any():
            bad = raw[known][ages.isna()].iloc[0]
            raise DataFormatError(f"user attribute 'age' of {ds.name!r}: {bad!r} is not a "
                                  "number")
        labels[np.flatnonzero(known.to_numpy())] = (
            np.searchsorted(AGE_BOUNDS, ages.to_numpy(), side="right") - 1)
        present = sorted(set(labels[labels >= 0].tolist()))
        remap = np.full(len(AGE_BOUNDS), -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        labels[labels >= 0] = remap[labels[labels >= 0]]
        classes = [AGE_NAMES[g] for g in present]
    else:
        classes = sorted(set(raw[known].tolist()))
        index = {c: k for k, c in enumerate(classes)}
        labels[np.flatnonzero(known.to_numpy())] = [index[v] for v in raw[known].tolist()]
    if len(classes) < 2:
        raise DataFormatError(f"user attribute {attribute!r} of {ds.name!r} has "
                              f"{len(classes)} class(es); an attack needs at least two")
    return labels, classes


def labels_for(ds: Dataset, attributes: Sequence[str]) -> dict[str, np.ndarray]:
    """``{attribute: labels}`` for several attributes (see :func:`attribute_labels`)."""
    return {a: attribute_labels(ds, a)[0]
            for a in name_list(attributes, "attribute", " (e.g. gender,age)")}


def labelled_users(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """Boolean mask of the users with a known label (>= 0) for at least one attribute.

    Args:
        labels: ``{attribute: labels}`` (one entry per user, ``-1`` = unknown), at least
            one attribute, all of the same length.
    """
    return np.any(np.stack([np.asarray(v) >= 0 for v in labels.values()]), axis=0)


def label_share_users(labels: Mapping[str, np.ndarray] | np.ndarray, share: float,
                      seed: int) -> np.ndarray:
    """The users whose labels a defense may see: a seeded share of the labelled users.

    A user is *labelled* when it has a known label (>= 0) for at least one attribute.
    ``round(share · labelled)`` of them are drawn uniformly without replacement from
    ``trustrec.seeding.rng(seed, "label-share")``; the other labelled users are the
    held-out users the attacker is scored on. Users without any label are in neither.

    Args:
        labels: ``{attribute: labels}`` or one label array (``-1`` = unknown).
        share: the share seen by the defense, in ``(0, 1]`` (1: every labelled user).
        seed: root seed.

    Returns:
        Boolean mask of length ``n_users``: True for the users the defense sees.

    Raises:
        ConfigError: ``share`` outside ``(0, 1]``, or a share that leaves no user seen.
        DataFormatError: label arrays of different lengths, or no labelled user.
    """
    arrays = (list(labels.values()) if isinstance(labels, Mapping)
              else [np.asarray(labels)])
    if not arrays:
        raise ConfigError("no attribute labels given")
    if isinstance(share, bool) or not 0.0 < float(share) <= 1.0:
        raise ConfigError(f"label share must be in (0, 1], got {share!r}")
    n = len(arrays[0])
    if any(np.asarray(a).shape != (n,) for a in arrays):
        raise DataFormatError("label arrays must all have one entry per user")
    labelled = np.flatnonzero(labelled_users(dict(enumerate(arrays))))
    if not len(labelled):
        raise DataFormatError("no user has a known label")
    k = int(round(float(share) * len(labelled)))
    if k == 0:
        raise ConfigError(f"label share {share} of {len(labelled)} labelled users sees "
                          "nobody")
    seen = np.zeros(n, dtype=bool)
    seen[rng(seed, "label-share").choice(labelled, size=k, replace=False)] = True
    return seen


def restrict_labels(labels: Mapping[str, np.ndarray], users: np.ndarray | None
                    ) -> dict[str, np.ndarray]:
    """``{attribute: labels}`` with every user outside ``users`` set to ``-1`` (unknown).

    Args:
        labels: ``{attribute: labels}``.
        users: the users whose labels are kept: indices or a boolean mask; None keeps all.

    Raises:
        DataFormatError: a mask of the wrong length or indices out of range.
    """
    return {a: mask_labels(v, users) for a, v in labels.items()}


def mask_labels(labels: np.ndarray, users: np.ndarray | None) -> np.ndarray:
    """One label array with every user outside ``users`` set to ``-1`` (unknown).

    Args:
        labels: ``(n_users,)`` integer labels.
        users: user indices or a boolean mask of length ``n_users``; None keeps all.

    Raises:
        DataFormatError: a mask of the wrong length or indices out of range.
    """
    labels = np.asarray(labels)
    if users is None:
        return labels
    users = np.asarray(users)
    if users.dtype == bool:
        if users.shape != labels.shape:
            raise DataFormatError(f"users mask has shape {users.shape}, expected "
                                  f"{labels.shape}")
        keep = users
    else:
        if not np.issubdtype(users.dtype, np.integer) and users.size:
            raise DataFormatError(f"users must be integer indices or a boolean mask, got "
                                  f"{users.dtype}")
        idx = users.astype(np.int64).ravel()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(labels)):
            raise DataFormatError(f"user index out of range [0, {len(labels)})")
        keep = np.zeros(len(labels), dtype=bool)
        keep[idx] = True
    return np.where(keep, labels, -1)


# ---------------------------------------------------------------------------- user table
def user_table(model: EmbeddingRecommender, *, by: str = "reading the released user table"
               ) -> np.ndarray:
    """The released ``(n_users, d)`` float32 user table of a fitted model (a view).

    Args:
        model: a fitted model with the
            :class:`~trustrec.models.capabilities.ReleasesUserTable` capability.
        by: who asks, for the error message.

    Raises:
        ConfigError: the model releases no user table.
    """
    require(model, ReleasesUserTable, by=by)
    return model.released_user_table()


def with_user_table(model: EmbeddingRecommender, table: np.ndarray | torch.Tensor, *,
                    by: str = "replacing the released user table") -> EmbeddingRecommender:
    """A copy of ``model`` whose released user table is ``table``; nothing else changes.

    The copy shares no tensor with ``model`` (the original stays as it was).

    Raises:
        ConfigError: the model releases no user table.
        ValueError: ``table`` does not have the released table's shape.
    """
    require(model, ReleasesUserTable, by=by)
    return model.with_released_user_table(table)


# ---------------------------------------------------------------------------- registries
@runtime_checkable
class Protector(Protocol):
    """A post-training method: returns a copy of a trained model with a new user table.

    ``needs`` lists the capability protocols (:mod:`trustrec.models.capabilities`) it
    needs from the model; ``protect`` raises ConfigError for a model without them.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[type, ...]]

    def protect(self, model: EmbeddingRecommender, train: Dataset,
                labels: Mapping[str, np.ndarray], *, seed: int = 0,
                progress: bool = False, label_users: np.ndarray | None = None
                ) -> EmbeddingRecommender: ...


@runtime_checkable
class Defense(Protocol):
    """An in-training defense: trains a registered model with a defensive objective.

    ``needs`` lists the capability protocols (:mod:`trustrec.models.capabilities`) the
    model class must implement; ``fit`` raises ConfigError before training otherwise.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[type, ...]]

    def fit(self, model: str, model_config: Mapping[str, Any], train: Dataset,
            valid: Dataset | None, labels: Mapping[str, np.ndarray], *, seed: int = 0,
            progress: bool = False, label_users: np.ndarray | None = None
            ) -> EmbeddingRecommender: ...


PROTECTORS: Registry[type] = Registry("post-training privacy method")
DEFENSES: Registry[type] = Registry("in-training privacy defense")


def make_protector(name: str, **config: Any) -> Protector:
    """Build a registered post-training method; unknown names or options are errors."""
    cls = PROTECTORS.get(name)
    return cls(build_config(cls.Config, config, where=f"method {name!r}"))


def make_defense(name: str, **config: Any) -> Defense:
    """Build a registered in-training defense; unknown names or options are errors."""
    cls = DEFENSES.get(name)
    return cls(build_config(cls.Config, config, where=f"defense {name!r}"))
