"""Train / validation / test splits of one Dataset (same id space)."""

from __future__ import annotations

from dataclasses import dataclass

from trustrec.data.dataset import Dataset


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of one dataset, sharing its id space."""

    train: Dataset
    valid: Dataset
    test: Dataset
