"""Profile pollution of sequential recommenders: the threat model, the budget, the result.

One threat model for every attack (the CREAT paper's, which it also applies to its
baselines "for fair comparison"): the attacker controls a share of real users' training
sequences and changes up to ``per_user`` items of each, in the window the victim reads
(its last ``max_len`` items), toward one target item ``v*``; the victim is then retrained
on the polluted data. An attack only decides **where** in each sequence the target goes
(:meth:`Attack.positions`); everything else is here, once:

* **Which users** (:func:`pick_users`): ``round(users × n_users)`` (at least one) drawn
  uniformly, seeded, from the users whose training sequence lacks the target and is
  longer than ``per_user`` items; the same users for every attack under one seed, so
  attacks are compared on the same sequences.
* **How** (``mode``): ``"replace"`` overwrites the item at each chosen position with the
  target (CREAT's substitution); ``"insert"`` adds the target right after it (same
  timestamp, ordered after the item).
* **The result** (:class:`Pollution`): the polluted training data and a receipt of every
  change (user, position in its time-ordered training history, item replaced), as JSON
  with raw ids.

Attacks are registered by name (:data:`ATTACKS`, :func:`make_attack`); ``none`` (the
papers' "Pure") changes nothing and is the negative control of every attack metric.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from trustrec.config import Configured, PositiveInt, UnitInterval, build_config, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.errors import ConfigError
from trustrec.models.sequential import SequentialRecommender, last_items
from trustrec.registry import Registry
from trustrec.seeding import rng


@typed_config
class Budget:
    """How much an attacker may change.

    Attributes:
        users: share of users whose training sequences are polluted, in (0, 1].
        per_user: items changed per polluted sequence (the paper's K).
        mode: ``"replace"`` (substitution) or ``"insert"``.
    """

    users: UnitInterval = 0.01
    per_user: PositiveInt = 5
    mode: Literal["replace", "insert"] = "replace"


@dataclass(frozen=True, eq=False)
class Pollution:
    """What an attack did.

    Attributes:
        data: the polluted training data (same id space).
        target: the target item index.
        users: ``(n,)`` polluted user indices.
        positions: ``(n, k)`` position of each change in the user's time-ordered training
            history (replaced item, or the item the target was inserted after).
        replaced: ``(n, k)`` item indices overwritten (``-1`` for insertions).
        mode: ``"replace"`` or ``"insert"``.
        attack: the attack's name.
    """

    data: Dataset
    target: int
    users: np.ndarray
    positions: np.ndarray
    replaced: np.ndarray
    mode: str
    attack: str

    def receipt(self) -> dict[str, Any]:
        """A JSON-ready account of every change, with raw ids."""
        ids = self.data.item_ids
        return {
            "attack": self.attack, "mode": self.mode,
            "target": str(ids[self.target]), "n_users": int(len(self.users)),
            "n_changes": int(self.positions.size),
            "changes": [
                {"user": str(self.data.user_ids[u]), "positions": p.tolist(),
                 "replaced": [None if i < 0 else str(ids[i]) for i in r]}
                for u, p, r in zip(self.users, self.positions, self.replaced, strict=True)],
        }


def pick_users(train: Dataset, target: int, budget: Budget, seed: int) -> np.ndarray:
    """The polluted users (sorted): see the module docstring.

    Raises:
        ConfigError: no user can be polluted (all have the target or too few items).
    """
    counts = train.user_counts()
    has_target = np.zeros(train.n_users, dtype=bool)
    has_target[train.users[train.items == target]] = True
    eligible = np.flatnonzero((counts > budget.per_user) & ~has_target)
    if not len(eligible):
        raise ConfigError(f"no user can be polluted: every user has the target or at most "
                          f"{budget.per_user} training items")
    n = min(len(eligible), max(1, round(budget.users * train.n_users)))
    return np.sort(rng(seed, "attack-users", target).choice(eligible, n, replace=False))


def windows_of(train: Dataset, users: np.ndarray, max_len: int) -> tuple[torch.Tensor,
                                                                         np.ndarray]:
    """The last ``max_len`` training items of ``users`` (left-padded, item + 1) and each
    user's history length."""
    q = Query.from_dataset(train, users)
    starts, ends = q.indptr[:-1], q.indptr[1:]
    return torch.from_numpy(last_items(q.items, starts, ends, max_len)), ends - starts


def pollute(train: Dataset, users: np.ndarray, positions: np.ndarray, target: int,
            mode: str) -> tuple[Dataset, np.ndarray]:
    """``train`` with the target written at ``positions`` (history positions per user).

    Returns:
        The polluted Dataset (same id space and name + ``"+polluted"``) and the
        ``(n, k)`` items replaced (``-1`` for insertions).
    """
    order = np.lexsort((train.timestamps, train.users))  # as Query.from_dataset
    indptr = np.zeros(train.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(train.users, minlength=train.n_users), out=indptr[1:])
    rows = order[indptr[users][:, None] + positions]
    name = f"{train.name}+polluted"
    if mode == "replace":
        replaced = train.items[rows].astype(np.int64)
        items = train.items.copy()
        items[rows.ravel()] = target
        return replace(train, name=name, items=items), replaced
    flat = rows.ravel()
    extra = dict(users=train.users[flat], items=np.full(len(flat), target),
                 timestamps=train.timestamps[flat])
    polluted = replace(
        train, name=name,
        **{k: np.concatenate([getattr(train, k), v]) for k, v in extra.items()},
        ratings=None if train.ratings is None else np.concatenate(
            [train.ratings, train.ratings[flat]]))
    return polluted, np.full(positions.shape, -1, dtype=np.int64)


class Attack(Configured):
    """A profile-pollution attack: where in each window the target goes.

    Subclasses set ``name``, a typed ``Config`` and :meth:`positions`.
    """

    name: ClassVar[str] = ""

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """``(n, k)`` distinct window columns (real items, not padding) to change.

        Args:
            victim: the clean victim (white-box) or a surrogate of it.
            windows: ``(n, max_len)`` left-padded windows (item index + 1).
            target: the target item index.
            k: changes per window (each window has more than ``k`` real items); an
                attack may use fewer (``none`` uses none).
            seed: seeds every random choice.
            progress: show a progress bar (long attacks).
        """
        raise NotImplementedError

    def perturb(self, victim: SequentialRecommender, train: Dataset, target: int,
                budget: Budget, seed: int = 0, progress: bool = False) -> Pollution:
        """Pollute ``train`` toward ``target`` within ``budget`` (see the module docstring).

        Raises:
            ConfigError: a victim that is not a fitted sequential model, a target outside
                the catalogue, or no user that can be polluted.
        """
        check_victim(victim, train)
        if not 0 <= target < train.n_items:
            raise ConfigError(f"target item index {target} is outside the catalogue "
                              f"[0, {train.n_items})")
        users = pick_users(train, target, budget, seed)
        windows, lengths = windows_of(train, users, victim.config.max_len)
        cols = np.asarray(self.positions(victim, windows, target, budget.per_user, seed,
                                         progress), dtype=np.int64).reshape(len(users), -1)
        real = np.take_along_axis(windows.numpy(), cols, axis=1) > 0
        repeated = (np.diff(np.sort(cols, axis=1), axis=1) == 0).any()
        if cols.shape[1] > budget.per_user or not real.all() or repeated:
            raise RuntimeError(f"attack {self.name!r} chose padding, repeated positions or "
                               "more than its budget")
        positions = lengths[:, None] - victim.config.max_len + cols
        data, replaced = pollute(train, users, positions, target, budget.mode)
        return Pollution(data, int(target), users, positions, replaced, budget.mode,
                         self.name)


def check_victim(victim: object, train: Dataset | None = None) -> None:
    """A fitted sequential model (in ``train``'s id space), or a clear error."""
    if not isinstance(victim, SequentialRecommender):
        raise ConfigError(f"profile-pollution attacks need a sequential victim (one of "
                          f"the models that score from histories); got "
                          f"{type(victim).__name__}")
    victim._check_fitted()
    if train is not None and victim.n_items_ != train.n_items:
        raise ConfigError(f"victim was fit on {victim.n_items_} items, the data has "
                          f"{train.n_items}")


ATTACKS: Registry[type[Attack]] = Registry("attack")


def make_attack(name: str, **config: Any) -> Attack:
    """Build a registered attack; unknown names or options are errors."""
    cls = ATTACKS.get(name)
    return cls(build_config(cls.Config, config, where=f"attack {name!r}"))
