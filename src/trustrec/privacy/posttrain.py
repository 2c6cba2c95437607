"""Scaffolding shared by the post-training protectors (PoT-AU, LEGO).

* :func:`check_labels` validates ``{attribute: labels}`` against a model's user table.
* :func:`class_groups` splits the labelled users of one attribute into classes.
* :func:`original_top_k` gives each user's top-k unseen items under the *original* model.
* :class:`ProtectorBase` checks that the model has the capabilities the method needs
  (``needs``: a released user table, and for PoT-AU differentiable pair scores,
  :mod:`trustrec.models.capabilities`), runs the method's ``_protect`` and returns a copy
  of the model with the new released table and a ``fit_info_["protection"]`` record
  (method, config, attributes, seconds, per-step losses).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from trustrec.config import Configured
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.ranking import dataset_csr, rank_topk
from trustrec.models.base import EmbeddingRecommender
from trustrec.models.capabilities import ReleasesUserTable, require
from trustrec.privacy.base import labelled_users, restrict_labels, user_table, with_user_table


def check_labels(model: EmbeddingRecommender, labels: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """Checked int64 copies of ``{attribute: labels}`` (``-1`` = unknown) for ``model``.

    Raises:
        ConfigError: no attribute given.
        DataFormatError: labels that are not one integer per row of the user table, or an
            attribute with fewer than two classes among the labelled users.
    """
    if not labels:
        raise ConfigError("no attribute labels given (e.g. labels_for(train, ['gender']))")
    n = len(user_table(model))
    out: dict[str, np.ndarray] = {}
    for name, lab in labels.items():
        arr = np.asarray(lab)
        if arr.ndim != 1 or len(arr) != n:
            raise DataFormatError(f"labels of {name!r} must be one integer per user ({n}), "
                                  f"got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataFormatError(f"labels of {name!r} must be integers (-1 = unknown), got "
                                  f"{arr.dtype}")
        if (arr < -1).any():
            raise DataFormatError(f"labels of {name!r} must be >= -1 (-1 = unknown)")
        if len(np.unique(arr[arr >= 0])) < 2:
            raise DataFormatError(f"attribute {name!r} has fewer than two classes among the "
                                  "labelled users; nothing to protect")
        out[str(name)] = arr.astype(np.int64)
    return out


def check_train(model: EmbeddingRecommender, train: Dataset) -> None:
    """Raise DataFormatError unless ``train`` is in the model's user id space."""
    n = len(user_table(model))
    if train.n_users != n:
        raise DataFormatError(f"the training data has {train.n_users} users but the model's "
                              f"user table has {n} rows (not the model's id space)")


def class_groups(labels: np.ndarray) -> list[torch.Tensor]:
    """User indices of each class present in ``labels`` (>= 0), largest class first.

    Ties in size are broken by the lower class label, so the order is deterministic.
    """
    classes, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = np.lexsort((classes, -counts))
    return [torch.from_numpy(np.flatnonzero(labels == classes[c])) for c in order]


def random_groups(groups: list[torch.Tensor], gen: np.random.Generator
                  ) -> list[torch.Tensor]:
    """The users of ``groups`` shuffled and cut into random groups of the same sizes."""
    users = torch.cat(groups)
    perm = torch.from_numpy(gen.permutation(len(users)))
    return list(torch.split(users[perm], [len(g) for g in groups]))


def group_offsets(table: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """``(C, d)``: each group's mean row minus the mean row of all their users."""
    rows = table.double()
    centre = rows[torch.cat(groups)].mean(0)
    return torch.stack([rows[g].mean(0) - centre for g in groups]).to(table.dtype)


def chance_offsets(table: torch.Tensor, groups: list[torch.Tensor],
                   gen: np.random.Generator) -> torch.Tensor:
    """Mean offsets of random groups of the classes' sizes, ``(C, d)``.

    The labelled users (the union of ``groups``) are shuffled and cut into groups of the
    same sizes (:func:`random_groups`); each offset is that random group's mean row minus
    the mean row of all labelled users. Protectors compare the classes *after*
    subtracting these offsets, so the classes end up as different as random groups of
    those sizes are, rather than more alike (see :class:`trustrec.privacy.potau.PoTAU`).

    Args:
        table: ``(n_users, d)`` the original table.
        groups: user indices per class.
        gen: seeded generator of the relabelling.
    """
    return group_offsets(table, random_groups(groups, gen))


def original_top_k(model: EmbeddingRecommender, train: Dataset, k: int,
                   chunk_size: int = 2048) -> torch.Tensor:
    """Each user's top-``k`` items (best first) under ``model``, training items excluded.

    Args:
        model: the original fitted model.
        train: its training data (these items are never in a user's list).
        k: list length (at most ``n_items``).
        chunk_size: users scored at once.

    Returns:
        ``(n_users, min(k, n_items))`` int64 tensor.
    """
    check_train(model, train)
    n_users = len(user_table(model))
    mask = dataset_csr(train)
    parts = []
    for start in range(0, n_users, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n_users))
        parts.append(rank_topk(model.score(rows), mask, rows, k))
    return torch.from_numpy(np.concatenate(parts))


class ProtectorBase(Configured):
    """Base of the post-training protectors: checks, timing and the protection record.

    Subclasses set ``name``, a typed ``Config`` (:func:`trustrec.config.typed_config`) and
    ``needs`` (the model capabilities they use, at least
    :class:`~trustrec.models.capabilities.ReleasesUserTable`), and implement
    :meth:`_protect` returning the new user table and a JSON-ready ``info`` dict
    (per-step losses, ...).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[type, ...]] = (ReleasesUserTable,)

    def protect(self, model: EmbeddingRecommender, train: Dataset,
                labels: Mapping[str, np.ndarray], *, seed: int = 0,
                progress: bool = False, label_users: np.ndarray | None = None
                ) -> EmbeddingRecommender:
        """A copy of ``model`` whose released user table no longer reveals the attributes.

        Args:
            model: a fitted model (left unchanged).
            train: its training data (same user and item id space).
            labels: ``{attribute: int labels per user}``, ``-1`` = unknown (see
                :func:`trustrec.privacy.base.labels_for`).
            seed: root seed of the method's randomness.
            progress: show a progress bar.
            label_users: the users whose labels the method may use (indices or a boolean
                mask; :func:`trustrec.privacy.base.label_share_users`); the others count as
                unknown. None: every label given.

        Returns:
            The protected copy; ``fit_info_["protection"]`` records the method, its config,
            the attributes, the number of users whose labels it used, the seconds spent
            and the per-step losses.

        Raises:
            ConfigError: the model lacks a capability the method needs (``needs``), or no
                attribute is given.
            DataFormatError: bad labels, or training data of another id space.
        """
        require(model, *self.needs, by=f"method {self.name!r}")
        checked = check_labels(model, restrict_labels(labels, label_users))
        check_train(model, train)
        t0 = time.perf_counter()
        table, info = self._protect(model, train, checked, seed=int(seed),
                                    progress=progress)
        info = {"labelled_users": int(labelled_users(checked).sum()), **info}
        return self._release(model, table, list(checked), int(seed),
                             time.perf_counter() - t0, info)

    def _release(self, model: EmbeddingRecommender, table: torch.Tensor,
                 attributes: list[str], seed: int, seconds: float, info: dict[str, Any]
                 ) -> EmbeddingRecommender:
        """The copy of ``model`` with ``table`` released and the protection record."""
        out = with_user_table(model, table.detach())
        out.fit_info_["protection"] = {"method": self.name, "config": self.config_dict(),
                                       "attributes": attributes, "seed": seed,
                                       "seconds": seconds, **info}
        return out

    def _protect(self, model: EmbeddingRecommender, train: Dataset,
                 labels: dict[str, np.ndarray], *, seed: int, progress: bool
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError
