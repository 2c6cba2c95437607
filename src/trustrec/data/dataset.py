"""The immutable interaction dataset every other module reads."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.data.request import ForgetRequest


def read_only(a: np.ndarray) -> np.ndarray:
    """A contiguous, read-only view (or copy) of ``a``: what datasets and queries hold."""
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Dataset:
    """Implicit-feedback interactions with contiguous integer ids.

    Users are ``0..n_users-1`` and items ``0..n_items-1``; ``user_ids[u]`` / ``item_ids[i]``
    give the raw ids back. Splits and forget operations keep the id space (``n_users``,
    ``n_items``, maps, attribute tables) and only drop interaction rows, so models trained
    on any split of one dataset share embedding shapes.

    Attributes:
        name: short name, e.g. ``"ml-100k"``.
        users: int32 user index per interaction.
        items: int32 item index per interaction.
        timestamps: int64 timestamp per interaction (0 where the source has none).
        n_users: size of the user id space.
        n_items: size of the item id space.
        user_ids: raw user id per user index (strings).
        item_ids: raw item id per item index (strings).
        user_attributes: one row per user index (``index`` = user index), e.g. columns
            ``gender``, ``age``, ``occupation``; empty when the source has none.
        item_attributes: one row per item index; may be empty.
        ratings: optional float32 rating per interaction (kept for reference; every
            interaction counts as a positive).
    """

    name: str
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_attributes: pd.DataFrame = field(default_factory=pd.DataFrame)
    item_attributes: pd.DataFrame = field(default_factory=pd.DataFrame)
    ratings: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        object.__setattr__(self, "users", read_only(np.asarray(self.users, dtype=np.int32)))
        object.__setattr__(self, "items", read_only(np.asarray(self.items, dtype=np.int32)))
        object.__setattr__(
            self, "timestamps", read_only(np.asarray(self.timestamps, dtype=np.int64))
        )
        if self.ratings is not None:
            object.__setattr__(self, "ratings", read_only(np.asarray(self.ratings, np.float32)))
        for nm in ("items", "timestamps") + (("ratings",) if self.ratings is not None else ()):
            if len(getattr(self, nm)) != n:
                raise ValueError(f"Dataset {self.name!r}: {nm} has {len(getattr(self, nm))} rows, "
                                 f"users has {n}")
        if len(self.user_ids) != self.n_users or len(self.item_ids) != self.n_items:
            raise ValueError(f"Dataset {self.name!r}: id maps do not match n_users/n_items")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise ValueError(f"Dataset {self.name!r}: user index out of range")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"Dataset {self.name!r}: item index out of range")

    # ------------------------------------------------------------------ basic views
    @property
    def n_interactions(self) -> int:
        """Number of interaction rows."""
        return int(len(self.users))

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, "
                f"interactions={self.n_interactions})")

    def to_csr(self, dtype: type = np.float32) -> sp.csr_matrix:
        """Binary user × item matrix (duplicates collapse to 1)."""
        m = sp.csr_matrix(
            (np.ones(self.n_interactions, dtype=dtype), (self.users, self.items)),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1
        return m

    def user_counts(self) -> np.ndarray:
        """Interactions per user index (length ``n_users``)."""
        return np.bincount(self.users, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Interactions per item index (length ``n_items``)."""
        return np.bincount(self.items, minlength=self.n_items)

    def active_users(self) -> np.ndarray:
        """Sorted user indices with at least one interaction."""
        return np.flatnonzero(self.user_counts() > 0)

    def to_frame(self, raw_ids: bool = False) -> pd.DataFrame:
        """Interactions as a DataFrame (``user``, ``item``, ``timestamp`` [, ``rating``])."""
        df = pd.DataFrame({"user": self.users, "item": self.items, "timestamp": self.timestamps})
        if raw_ids:
            df["user"] = self.user_ids[self.users]
            df["item"] = self.item_ids[self.items]
        if self.ratings is not None:
            df["rating"] = self.ratings
        return df

    # ------------------------------------------------------------------ derived datasets
    def select(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """A new Dataset holding only the rows where ``mask`` is true (same id space)."""
        mask = np.asarray(mask)
        return replace(
            self,
            name=name or self.name,
            users=self.users[mask],
            items=self.items[mask],
            timestamps=self.timestamps[mask],
            ratings=None if self.ratings is None else self.ratings[mask],
        )

    def restrict_users(self, users: np.ndarray, name: str | None = None) -> Dataset:
        """Rows of the given user indices only (same id space)."""
        keep = np.zeros(self.n_users, dtype=bool)
        keep[np.asarray(users, dtype=np.int64)] = True
        return self.select(keep[self.users], name)

    def pair_keys(self) -> np.ndarray:
        """One int64 key per row, ``user * n_items + item`` (for set operations on pairs)."""
        return self.users.astype(np.int64) * self.n_items + self.items

    def without(self, request: ForgetRequest) -> Dataset:
        """A new Dataset with every row the request names physically removed.

        The id space is kept: a forgotten user keeps its index but has no rows, and its
        attributes are erased (:meth:`without_user_attributes`).
        """
        return self.select(~request.row_mask(self)).without_user_attributes(request.users)

    def with_ids(self, user_ids: np.ndarray | None = None,
                 item_ids: np.ndarray | None = None) -> Dataset:
        """The same rows with other raw-id maps (same lengths, ids unique).

        Used to erase the raw ids of forgotten users and items from every copy of an id
        space (see :mod:`trustrec.workflows.forget`).

        Raises:
            ValueError: a map of the wrong length or with duplicate ids.
        """
        new = {}
        for name, ids, n in (("user_ids", user_ids, self.n_users),
                             ("item_ids", item_ids, self.n_items)):
            if ids is None:
                continue
            ids = np.asarray(ids).astype(str)
            if len(ids) != n or len(np.unique(ids)) != n:
                raise ValueError(f"Dataset {self.name!r}: {name} must hold {n} unique ids")
            new[name] = ids
        return replace(self, **new) if new else self

    def without_item_attributes(self, items: np.ndarray) -> Dataset:
        """A new Dataset whose attribute rows of ``items`` (indices) are all missing."""
        return self._without_attributes("item_attributes", items)

    def without_user_attributes(self, users: np.ndarray) -> Dataset:
        """A new Dataset whose attribute rows of ``users`` (indices) are all missing.

        Used when users are forgotten: a deletion request covers the user's profile
        (gender, age, ...) as well as its interactions. Columns become pandas' nullable
        dtypes so that other users' values keep their type; the input is not changed.
        """
        return self._without_attributes("user_attributes", users)

    def _without_attributes(self, field_name: str, ids: np.ndarray) -> Dataset:
        ids = np.asarray(ids, dtype=np.int64)
        table = getattr(self, field_name)
        if table.empty or len(ids) == 0:
            return self
        gone = table.index.intersection(ids)
        if len(gone) == 0:
            return self
        table = table.convert_dtypes()
        table.loc[gone, :] = pd.NA
        return replace(self, **{field_name: table})
