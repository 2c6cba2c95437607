"""Protect a fitted model: apply a registered post-training method to its user table.

The directory-level workflow (``trustrec protect``: load a model directory, protect, verify,
write a new one; re-protection after a deletion) is :mod:`trustrec.workflows.protect`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trustrec.config import name_list
from trustrec.models.base import EmbeddingRecommender


def table_sha256(table: np.ndarray) -> str:
    """sha256 of a float32 table's bytes (C order) and shape."""
    arr = np.ascontiguousarray(table, dtype=np.float32)
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


def attribute_list(attributes: Sequence[str] | str) -> list[str]:
    """Attribute names from a list or a comma string (at least one, none twice)."""
    return name_list(attributes, "attribute", " (e.g. --attributes gender,age)")


def protect_model(model: EmbeddingRecommender, train: Any, method: str,
                  attributes: Sequence[str] | str, *, config: Mapping[str, Any] | None = None,
                  seed: int = 0, progress: bool = False, reuse: Any = None
                  ) -> tuple[EmbeddingRecommender, Any]:
    """Apply a registered post-training method to a fitted model.

    Args:
        model: the fitted model (unchanged).
        train: its training data (user attributes and the id space).
        method: a name in :data:`~trustrec.privacy.base.PROTECTORS`.
        attributes: attribute names or ``"gender,age"``.
        config: method options.
        seed: root seed.
        progress: show progress bars.
        reuse: a LEGO protector holding calibrations made from ``model``'s *original*
            table (``model`` is then the LEGO-protected model): only attributes it lacks
            are calibrated, those not asked for are dropped.

    Returns:
        ``(protected model, protector)``.
    """
    from trustrec.privacy.base import labels_for, make_protector, with_user_table

    names = attribute_list(attributes)
    labels = labels_for(train, names)
    if reuse is not None:
        original = with_user_table(model, reuse.origin_.numpy())
        have = list(reuse.calibrations_)
        add = [a for a in names if a not in have]
        drop = [a for a in have if a not in names]
        protected = reuse.update(original, train, labels, add=add, drop=drop,
                                 progress=progress)
        return protected, reuse
    protector = make_protector(method, **dict(config or {}))
    return protector.protect(model, train, labels, seed=int(seed), progress=progress), \
        protector
