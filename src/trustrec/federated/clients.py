"""Clients' local data and the padded work batch of one round.

One client per user (the federated-recommendation setting of FedMF, FedNCF, PFedRec and
FedRecGEL): client ``c`` holds user ``c``'s training items and nothing else. In a round a
client trains on all its positives and ``n_neg`` fresh negatives per positive, drawn from
the items it has not interacted with by :mod:`~trustrec.federated.keyed` hashing of
``(round, client, position)``, so a client draws the same negatives alone or in a batch.

:class:`Work` pads a batch of clients to a rectangle: ``items`` holds each client's
distinct items (its positives and its negatives, deduplicated), ``rows`` indexes into
them. A client's copy of a shared item table is just the rows it touches, which is exact:
a client's loss never reads another row, so another row's gradient (and local update) is
zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import dataset_csr
from trustrec.federated.keyed import keyed_uniform

# Re-draw rounds for negatives that hit a positive (each round re-draws only the hits).
MAX_REDRAWS = 64


@dataclass(frozen=True)
class ClientData:
    """Every client's training items, as CSR (row = client = user).

    Attributes:
        csr: binary client × item matrix of training interactions (sorted indices).
        n_items: catalogue size.
    """

    csr: sp.csr_matrix
    n_items: int

    @classmethod
    def from_dataset(cls, train: Dataset, clients: np.ndarray | None = None) -> ClientData:
        """Clients from a training split: one per user.

        Args:
            train: the training interactions.
            clients: the users that take part (default: every user with training data);
                the others hold no data in the federation.

        Raises:
            ConfigError: a listed client has no training interaction (an empty client
                cannot train and would upload nothing), is listed twice or is not a user.
        """
        csr = dataset_csr(train)
        if clients is not None:
            clients = np.asarray(clients, dtype=np.int64)
            if not len(clients):
                raise ConfigError("a federation needs at least one client; none was given")
            if clients.min() < 0 or clients.max() >= train.n_users:
                raise ConfigError(f"client ids must be user indices in [0, {train.n_users})")
            if len(np.unique(clients)) != len(clients):
                raise ConfigError("a client is listed twice")
            empty = clients[np.diff(csr.indptr)[clients] == 0]
            if len(empty):
                raise ConfigError(
                    f"{len(empty)} client(s) have no training interaction (first: user "
                    f"index {int(empty[0])}); an empty client cannot train: drop it")
            keep = np.zeros(train.n_users, dtype=np.float32)
            keep[clients] = 1.0
            csr = sp.diags(keep) @ csr
            csr.eliminate_zeros()
        elif csr.nnz == 0:
            raise ConfigError("the training split is empty: no client can train")
        full = np.flatnonzero(np.diff(csr.indptr) >= train.n_items)
        if len(full):
            raise ConfigError(f"client (user index) {int(full[0])} holds every item: it has "
                              "no negative to train on")
        csr = sp.csr_matrix(csr, dtype=np.float32)
        csr.sort_indices()
        return cls(csr=csr, n_items=int(train.n_items))

    @property
    def n_clients(self) -> int:
        """Number of client slots (users; those not taking part have no rows)."""
        return int(self.csr.shape[0])

    def members(self) -> np.ndarray:
        """The clients that take part (those with training items)."""
        return np.flatnonzero(np.diff(self.csr.indptr) > 0)

    def sizes(self, clients: np.ndarray) -> np.ndarray:
        """Training positives of each client in ``clients``."""
        return np.diff(self.csr.indptr)[clients]

    @functools.cached_property
    def keys(self) -> np.ndarray:
        """Sorted ``client * n_items + item`` keys of every training pair."""
        rows = np.repeat(np.arange(self.csr.shape[0], dtype=np.int64), np.diff(self.csr.indptr))
        return rows * self.n_items + self.csr.indices

    def is_positive(self, clients: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (client, item) is one of the client's training items."""
        keys = self.keys
        q = clients.astype(np.int64) * self.n_items + items
        at = np.searchsorted(keys, q)
        return (at < len(keys)) & (keys[np.minimum(at, len(keys) - 1)] == q)


@dataclass(frozen=True)
class Work:
    """A padded batch of clients' local data for one round (torch tensors).

    Attributes:
        clients: ``(B,)`` client indices.
        items: ``(B, U)`` each client's distinct items (padding: item 0, masked).
        item_mask: ``(B, U)`` True on real entries.
        rows: ``(B, L)`` training rows, as indices into the client's ``items``.
        labels: ``(B, L)`` 1 for a positive, 0 for a negative.
        row_mask: ``(B, L)`` 1.0 on real rows, 0.0 on padding.
        n_rows: ``(B,)`` real rows per client (positives × (1 + n_neg)).
    """

    clients: torch.Tensor
    items: torch.Tensor
    item_mask: torch.Tensor
    rows: torch.Tensor
    labels: torch.Tensor
    row_mask: torch.Tensor
    n_rows: torch.Tensor


def draw_negatives(data: ClientData, clients: np.ndarray, key: int, round_: int,
                   n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_neg`` negatives per positive for each client, keyed by (round, client, position).

    Returns:
        ``(owner, item)``: the client of each negative (grouped by client, in ``clients``
        order) and the item, never one of the owner's training items.
    """
    sizes = data.sizes(clients) * n_neg
    owner = np.repeat(clients, sizes)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    items = np.empty(len(owner), dtype=np.int64)
    todo = np.arange(len(owner))
    n_items = data.n_items
    for attempt in range(MAX_REDRAWS):
        u = keyed_uniform(key, round_, owner[todo], pos[todo], attempt)
        items[todo] = np.minimum((u * n_items).astype(np.int64), n_items - 1)
        todo = todo[data.is_positive(owner[todo], items[todo])]
        if not len(todo):
            break
    # Still a positive after every redraw (a client holding nearly every item): draw from
    # its complement exactly, still keyed by position.
    for row in todo:
        c = owner[row]
        own = data.csr.indices[data.csr.indptr[c]:data.csr.indptr[c + 1]]
        free = np.setdiff1d(np.arange(n_items), own)
        u = keyed_uniform(key, round_, c, pos[row], MAX_REDRAWS)
        items[row] = free[min(int(u * len(free)), len(free) - 1)]
    return owner, items


def build_work(data: ClientData, clients: np.ndarray, key: int, round_: int,
               n_neg: int) -> Work:
    """The padded local data of ``clients`` for round ``round_``.

    Rows of a client: its positives in item order, then its negatives in draw order.
    """
    clients = np.asarray(clients, dtype=np.int64)
    csr = data.csr
    n_items = data.n_items
    sizes = data.sizes(clients)
    starts = csr.indptr[clients]
    pos_items = csr.indices[np.repeat(starts - np.cumsum(sizes) + sizes, sizes)
                            + np.arange(sizes.sum())].astype(np.int64)
    _, neg_items = draw_negatives(data, clients, key, round_, n_neg)
    slot = np.repeat(np.arange(len(clients)), sizes)
    neg_slot = np.repeat(np.arange(len(clients)), sizes * n_neg)
    # Rows grouped by client: positives then negatives.
    order = np.argsort(np.concatenate([slot * 2, neg_slot * 2 + 1]), kind="stable")
    row_slot = np.concatenate([slot, neg_slot])[order]
    row_item = np.concatenate([pos_items, neg_items])[order]
    row_label = np.concatenate([np.ones(len(pos_items)), np.zeros(len(neg_items))])[order]
    n_rows = sizes * (1 + n_neg)
    b = len(clients)
    length = int(n_rows.max()) if b else 0
    col = np.arange(len(row_slot)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    # Each client's distinct items and the local index of each row.
    keys = row_slot * n_items + row_item
    uniq, local_flat = np.unique(keys, return_inverse=True)
    u_slot = uniq // n_items
    u_count = np.bincount(u_slot, minlength=b)
    u_first = np.cumsum(u_count) - u_count
    u_col = np.arange(len(uniq)) - np.repeat(u_first, u_count)
    width = int(u_count.max()) if b else 0
    items = np.zeros((b, width), dtype=np.int64)
    item_mask = np.zeros((b, width), dtype=bool)
    items[u_slot, u_col] = uniq % n_items
    item_mask[u_slot, u_col] = True
    rows = np.zeros((b, length), dtype=np.int64)
    labels = np.zeros((b, length), dtype=np.float32)
    row_mask = np.zeros((b, length), dtype=np.float32)
    rows[row_slot, col] = local_flat - u_first[row_slot]
    labels[row_slot, col] = row_label
    row_mask[row_slot, col] = 1.0
    return Work(clients=torch.from_numpy(clients), items=torch.from_numpy(items),
                item_mask=torch.from_numpy(item_mask), rows=torch.from_numpy(rows),
                labels=torch.from_numpy(labels), row_mask=torch.from_numpy(row_mask),
                n_rows=torch.from_numpy(n_rows.astype(np.int64)))


def chunks_by_size(data: ClientData, clients: np.ndarray, n_neg: int, max_rows: int,
                   per_client: int = 0) -> list[np.ndarray]:
    """Split ``clients`` into batches of similar size, each costing at most ``max_rows``
    rows: B × (longest client's rows + ``per_client``), where ``per_client`` counts what
    each client copies whatever its size (its dense layers, in rows), so padding wastes
    little and memory stays bounded. A client over the budget gets a batch of its own.
    """
    clients = np.asarray(clients, dtype=np.int64)
    order = clients[np.argsort(data.sizes(clients), kind="stable")]
    rows = data.sizes(order) * (1 + n_neg) + per_client
    out: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # Sizes ascend, so the batch's longest client is its last one.
        fits = np.flatnonzero(rows[start:] * np.arange(1, len(order) - start + 1) <= max_rows)
        stop = start + (int(fits[-1]) + 1 if len(fits) else 1)
        out.append(order[start:stop])
        start = stop
    return out
