"""The Unlearner protocol, its report, and the method registry.

An Unlearner wraps a model factory: ``fit`` learns (whole, sharded or sequential),
``forget(request)`` removes data and updates the model, ``score`` recommends from the
current state. The Unlearner owns the only internal copy of its training data
(``train_``); after ``forget`` the requested rows are physically absent from it and from
every shard's copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from trustrec.config import build_config
from trustrec.data.dataset import Dataset
from trustrec.registry import Registry
from trustrec.unlearn.request import ForgetRequest


@dataclass
class ForgetReport:
    """What a ``forget`` call did, as evidence for the requester.

    Attributes:
        method: unlearning method name.
        exact: whether the result equals retraining what was retrained.
        request: the request as JSON (indices).
        rows_removed: training rows physically removed.
        users_affected: user indices that lost at least one row.
        retrained: what was retrained, e.g. ``["full"]`` or ``["shard 3", "shard 7"]``.
        seconds: wall time of the ``forget`` call.
        rows_remaining: training rows left after the call.
        details: method-specific extras (JSON-ready).
    """

    method: str
    exact: bool
    request: dict[str, Any]
    rows_removed: int
    users_affected: list[int]
    retrained: list[str]
    seconds: float
    rows_remaining: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@runtime_checkable
class Unlearner(Protocol):
    """Learn, then forget, on the same object."""

    name: ClassVar[str]
    exact: ClassVar[bool]
    supports: ClassVar[frozenset[str]]  # subset of {"user", "interaction", "item"}
    train_: Dataset

    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False) -> Self: ...

    def forget(self, request: ForgetRequest) -> ForgetReport: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


UNLEARNERS: Registry[type] = Registry("unlearning method")


def make_unlearner(name: str, model: str, model_config: dict[str, Any] | None = None,
                   **config: Any) -> Unlearner:
    """Build a registered unlearning method around a registered model.

    Args:
        name: method name, e.g. ``"retrain"`` or ``"sisa"``.
        model: model name, e.g. ``"bpr"``.
        model_config: the model's config values.
        **config: the method's own config values (unknown keys are an error).
    """
    cls = UNLEARNERS.get(name)
    cfg = build_config(cls.Config, config, where=f"method {name!r}")
    return cls(model=model, model_config=dict(model_config or {}), config=cfg)
