"""What a recommender is asked to score: users, and optionally each user's history.

``Recommender.score`` takes either an array of user indices (the usual case: the model
knows its users from training) or a :class:`Query`, which adds the item history of each
queried user. A model that scores from a sequence (a session or next-item model) reads
the history; an embedding model that looks its users up by index ignores it. Histories are
stored as one CSR-style pair of arrays, so a batch of users costs two arrays, not a list
of Python lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trustrec.data.dataset import Dataset, read_only


@dataclass(frozen=True, eq=False)
class Query:
    """Users to score, with an optional item history per user.

    Attributes:
        users: ``(n,)`` int64 user indices (a user may be unknown to a model that scores
            from the history alone; embedding models need indices they were fit on).
        indptr: ``(n + 1,)`` int64 offsets into ``items``: the history of ``users[r]`` is
            ``items[indptr[r]:indptr[r + 1]]``, oldest first. None: no history given.
        items: int64 item indices of all histories, concatenated. None with ``indptr``.

    Raises:
        ValueError: ``indptr`` without ``items`` (or the reverse), offsets that do not
            start at 0, decrease, or do not end at ``len(items)``, or a length that does
            not match ``users``.
    """

    users: np.ndarray
    indptr: np.ndarray | None = None
    items: np.ndarray | None = None

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "users", read_only(users))
        if (self.indptr is None) != (self.items is None):
            raise ValueError("Query: give both indptr and items (a history) or neither")
        if self.indptr is None:
            return
        indptr = np.asarray(self.indptr, dtype=np.int64).reshape(-1)
        items = np.asarray(self.items, dtype=np.int64).reshape(-1)
        if len(indptr) != len(users) + 1:
            raise ValueError(f"Query: indptr has {len(indptr)} entries, expected "
                             f"len(users) + 1 = {len(users) + 1}")
        if indptr[0] != 0 or indptr[-1] != len(items) or (np.diff(indptr) < 0).any():
            raise ValueError("Query: indptr must start at 0, never decrease and end at "
                             f"len(items) = {len(items)}")
        object.__setattr__(self, "indptr", read_only(indptr))
        object.__setattr__(self, "items", read_only(items))

    def __len__(self) -> int:
        return len(self.users)

    @property
    def has_history(self) -> bool:
        """Whether the query carries item histories."""
        return self.indptr is not None

    def history(self, r: int) -> np.ndarray:
        """The item history of the ``r``-th queried user (empty without histories)."""
        if self.indptr is None or self.items is None:
            return np.zeros(0, dtype=np.int64)
        return self.items[self.indptr[r]:self.indptr[r + 1]]

    def subset(self, rows: np.ndarray) -> Query:
        """The queried users at positions ``rows`` (any order, repeats allowed), with
        their histories."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        users = self.users[rows]
        if self.indptr is None or self.items is None:
            return Query(users)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = (np.repeat(starts - indptr[:-1], lengths)
                + np.arange(indptr[-1], dtype=np.int64))
        return Query(users, indptr, self.items[take])

    @classmethod
    def from_dataset(cls, data: Dataset, users: np.ndarray | None = None) -> Query:
        """A query of ``users`` (default: every user index) with their histories in
        ``data``, each ordered by timestamp (ties and undated rows keep the data's order).

        Args:
            data: the interactions the histories are read from.
            users: user indices to query (any order, repeats allowed).
        """
        order = np.lexsort((data.timestamps, data.users))  # by user, then time (stable)
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.users, minlength=data.n_users), out=indptr[1:])
        every = cls(np.arange(data.n_users, dtype=np.int64), indptr,
                    data.items[order].astype(np.int64))
        return every if users is None else every.subset(users)


def query_users(query: Query | np.ndarray) -> np.ndarray:
    """The int64 user indices of a query (a writable copy) or of an array of user
    indices."""
    if isinstance(query, Query):
        return query.users.copy()
    return np.asarray(query, dtype=np.int64)
