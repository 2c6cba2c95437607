"""Capability protocols: what a method may need from a model beyond :class:`Recommender`.

Every model offers the :class:`~trustrec.models.base.Recommender` protocol. A method that
needs more (an attribute-privacy protector that rewrites the released user table, an
influence-function unlearner that differentiates the training loss, ...) asks for one of
the small protocols below, and each model implements the ones it supports *in its own
file*. Methods check the protocol, never a model name: a model written later gets a method
by implementing what the method asks for, and a model without it is a clear
:class:`~trustrec.errors.ConfigError` (:func:`require`) naming the method, the capability,
the model and the registered models that have it.

The protocols have methods only (no data members), so both instances and classes can be
checked: :func:`has` (``isinstance(model, PairScorer)`` and ``issubclass(MODELS.get("bpr"),
PairScorer)`` answer the same, but cache a class's answer) on a fitted model or on a model
class, which is what a method checks before training anything, when it only has a model
name.

Capabilities:

* :class:`ReleasesUserTable`: the ``(n_users, d)`` user table a deployed model releases,
  the one attribute attackers read and privacy protectors replace.
* :class:`PairScorer`: differentiable scores of (user, item) pairs as a function of a
  candidate released user table (extends :class:`ReleasesUserTable`).
* :class:`HasTrainingObjective`: the model's own training loss as a differentiable torch
  function (:class:`~trustrec.models.objective.Objective`), for influence-function and
  gradient-based unlearning.
* :class:`WarmStart`: ``fit(..., init=params)`` starts from given parameters instead of the
  seeded initialisation (fine-tuning, staged training, two-phase defenses).
* :class:`DotProductScores`: the score is the dot product of a user and an item factor
  table (what an ensemble that aggregates embeddings combines).
* :class:`TrainsUserTables`: the learned per-user tables that training updates, which an
  in-training regulariser of user representations (In-UCDS) moves between epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np
import torch

from trustrec.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.data.dataset import Dataset
    from trustrec.models.objective import Objective

#: ``scorer(table) -> (r, k)`` scores (see :meth:`PairScorer.pair_scorer`).
TableScorer = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class ReleasesUserTable(Protocol):
    """A model that releases one user table: what attribute attackers read.

    The released table is the user representation the model scores with, e.g. BPR-MF's
    user factors, LightGCN's propagated user embeddings, NeuMF's GMF user embeddings.
    Post-training protectors return a copy of the model with another table released
    (:meth:`with_released_user_table`); in-training defenses write into the table that
    :meth:`released_user_table` returns, between epochs.
    """

    def released_user_table(self) -> np.ndarray:
        """The released ``(n_users, d)`` float32 user table of the fitted model.

        A view of the model's own tensor, not a copy: writing into it changes what the
        model releases and scores with (in-training defenses rely on this); copy it to
        keep it.
        """
        ...

    def with_released_user_table(self, table: np.ndarray | torch.Tensor) -> Self:
        """A copy of the model whose released user table is ``table`` (same shape).

        Nothing else changes, and the copy shares no tensor with this model.

        Raises:
            ValueError: ``table`` does not have the released table's shape.
        """
        ...


@runtime_checkable
class PairScorer(ReleasesUserTable, Protocol):
    """A model whose scores of (user, item) pairs are differentiable in its released user
    table (PoT-AU's function-space regulariser keeps each user's ranking while it moves
    the table)."""

    def pair_scorer(self, users: torch.Tensor, items: torch.Tensor) -> TableScorer:
        """``table -> (r, k)`` differentiable scores of ``users[r]`` for ``items[r, :]``.

        ``table`` replaces the released user table (everything else is the fitted model,
        held fixed); with the model's own table the scores equal :meth:`score` at those
        pairs. What does not depend on the table (item rows, biases) is gathered once here,
        so a call never forms the ``n_users × n_items`` matrix.

        Args:
            users: ``(r,)`` int64 user indices.
            items: ``(r, k)`` int64 item indices.
        """
        ...


@runtime_checkable
class HasTrainingObjective(Protocol):
    """A model whose training loss is available as a differentiable torch function."""

    def training_objective(self, seed: int = 0, n_neg: int | None = None) -> Objective:
        """The fitted model's objective (:class:`~trustrec.models.objective.Objective`):
        a sum over (user, item) rows plus data-independent terms, as a torch function of a
        parameter dict in the model's ``params_`` layout.

        Args:
            seed: seed of the hashed negatives (objectives with sampled negatives).
            n_neg: negatives per row (None: the objective's default).
        """
        ...


@runtime_checkable
class WarmStart(Protocol):
    """A model that can continue training from given parameters."""

    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False, init: Mapping[str, torch.Tensor] | None = None,
            **options: Any) -> Self:
        """Learn from ``train``, starting from ``init`` (copied) when given instead of the
        seeded initialisation; sampling and order still follow ``seed``."""
        ...

    def warm_start_state(self) -> Mapping[str, torch.Tensor]:
        """The fitted parameters a later ``fit(init=...)`` of the same model (same config
        shapes and id space) starts from."""
        ...


@runtime_checkable
class DotProductScores(Protocol):
    """A model whose score is the dot product of a user and an item factor table."""

    def score_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)``: ``(n_users, d)`` and ``(n_items, d)`` float32 tables with
        ``score(u)[i] == users[u] · items[i]`` (a bias folded in as a column)."""
        ...


@runtime_checkable
class TrainsUserTables(Protocol):
    """A model whose users are represented by learned tables that training updates."""

    def trained_user_tables(self) -> tuple[str, ...]:
        """Names of the ``params_`` tensors ``(n_users, d)`` that hold each user's learned
        representation. A fit callback may change them in place between epochs and the
        next epoch trains on from the changed rows; the state scored after the callback
        reflects the change."""
        ...


#: What each capability means, for error messages.
DESCRIPTIONS: dict[type, str] = {
    ReleasesUserTable: "a released user table",
    PairScorer: "pair scores differentiable in its released user table",
    HasTrainingObjective: "a differentiable training objective",
    WarmStart: "a warm start, fit(init=...) from given parameters",
    DotProductScores: "scores that are the dot product of user and item factors",
    TrainsUserTables: "learned user tables that training updates",
}


def _model_name(model: object) -> str:
    name = getattr(model, "name", "")
    if not name:
        name = model.__name__ if isinstance(model, type) else type(model).__name__
    return str(name)


def members(capability: type) -> frozenset[str]:
    """The methods a capability protocol asks for (its own and those of the capabilities
    it extends)."""
    return frozenset(name for base in capability.__mro__ if base in DESCRIPTIONS
                     for name, value in vars(base).items()
                     if not name.startswith("_") and callable(value))


def has(model: object, capability: type) -> bool:
    """Whether ``model`` (an instance or a class) implements ``capability``: it has every
    method the protocol asks for.

    Looked up afresh on every call, unlike ``isinstance`` / ``issubclass`` on a protocol,
    whose answer for a class is cached after the first check.
    """
    return all(callable(getattr(model, name, None)) for name in members(capability))


def models_with(capability: type) -> list[str]:
    """Names of the registered models that implement ``capability``, sorted."""
    from trustrec.models import MODELS  # registers the models

    return [n for n in MODELS.names() if has(MODELS.get(n), capability)]


def require(model: object, *capabilities: type, by: str) -> None:
    """Raise ConfigError unless ``model`` implements every capability.

    Args:
        model: a model instance or class.
        *capabilities: the protocols the caller needs.
        by: who needs them, for the message (e.g. ``"method 'scif'"``).

    Raises:
        ConfigError: e.g. ``method 'scif' needs a model with a differentiable training
            objective (HasTrainingObjective); model 'lightgcn' does not have one; models
            that do: bcemf, bpr, neumf, wmf``.
    """
    for cap in capabilities:
        if has(model, cap):
            continue
        others = models_with(cap)
        raise ConfigError(
            f"{by} needs a model with {DESCRIPTIONS.get(cap, cap.__name__)} "
            f"({cap.__name__}); model {_model_name(model)!r} does not have one; models "
            f"that do: {', '.join(others) or 'none'}")
