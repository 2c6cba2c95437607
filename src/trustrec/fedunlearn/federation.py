"""A federation to unlearn from: scikit-learn's digits split across clients, and the
request — forget one **class** everywhere, or forget a **backdoor**.

- ``class``: every client's rows of class ``target`` are the forget set.
- ``backdoor``: the first ``poison_clients`` clients add, for ``poison_rate`` of their
  rows whose label is not ``target``, a copy with a 2×2 trigger (the bottom-right pixels
  at full ink) relabelled ``target``; those copies are the forget set. A model that
  learned them sends triggered test images to ``target`` (attack success).

20 % of the images (stratified by a seeded draw) are the test split; the rest are dealt
to clients by :func:`~trustrec.data.tabular.dirichlet_split` (label skew).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trustrec.data.images import load_digits
from trustrec.data.tabular import dirichlet_split
from trustrec.errors import ConfigError
from trustrec.seeding import rng

REQUESTS = ("class", "backdoor")
#: The trigger's pixels in the flattened 8×8 image (rows 6–7, columns 6–7).
TRIGGER = np.array([54, 55, 62, 63])
N_CLASSES = 10


def add_trigger(x: np.ndarray) -> np.ndarray:
    """A copy of ``x`` with the trigger pixels at full ink."""
    out = np.array(x, copy=True)
    out[:, TRIGGER] = 1.0
    return out


@dataclass(frozen=True)
class UnlearnFederation:
    """Clients' rows, what each must forget, and the test split.

    Attributes:
        request: ``class`` or ``backdoor``.
        target: the class to forget, or the backdoor's target label.
        x: each client's rows (float32 tensors, pixels in [0, 1]).
        y: each client's labels.
        forget: each client's boolean forget mask.
        x_test, y_test: the test split (clean images).
    """

    request: str
    target: int
    x: list[torch.Tensor]
    y: list[np.ndarray]
    forget: list[np.ndarray]
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_clients(self) -> int:  # noqa: D102
        return len(self.x)

    def retained(self, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """Client ``k``'s rows outside its forget set."""
        keep = ~self.forget[k]
        return self.x[k][torch.from_numpy(keep)], self.y[k][keep]

    def all_forgotten(self) -> tuple[torch.Tensor, np.ndarray]:
        """Every client's forget set, concatenated."""
        parts = [self.forgotten(k) for k in range(self.n_clients)]
        return torch.cat([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    def forgotten(self, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """Client ``k``'s forget set."""
        return self.x[k][torch.from_numpy(self.forget[k])], self.y[k][self.forget[k]]


def make_digits_federation(request: str, target: int, *, n_clients: int = 5,
                           alpha: float = 1.0, seed: int = 0, test_fraction: float = 0.2,
                           poison_clients: int = 2, poison_rate: float = 0.3,
                           data: tuple[np.ndarray, np.ndarray] | None = None
                           ) -> UnlearnFederation:
    """Digits across ``n_clients`` with the ``request`` to forget (module docstring);
    ``data`` is the loaded ``(x, y)`` (default: :func:`~trustrec.data.images.load_digits`).

    Raises:
        ConfigError: an unknown request, a class outside 0–9, bad fractions, a client with
            no row or with a single class, no forget row anywhere, or ``alpha`` ≤ 0.
    """
    if request not in REQUESTS:
        raise ConfigError(f"unknown unlearning request {request!r}; choose one of "
                          f"{', '.join(REQUESTS)}")
    if not 0 <= target < N_CLASSES:
        raise ConfigError(f"the digits have classes 0-9; got {target}")
    if not 0 < test_fraction < 1 or not 0 < poison_rate <= 1:
        raise ConfigError("test_fraction must be in (0, 1) and poison_rate in (0, 1]")
    if request == "backdoor" and not 1 <= poison_clients <= n_clients:
        raise ConfigError(f"poison_clients must be in 1..{n_clients}, got {poison_clients}")
    x, y = load_digits() if data is None else data
    gen = rng(seed, "fedunlearn", "split")
    test = np.zeros(len(y), dtype=bool)
    for c in range(N_CLASSES):
        rows = np.flatnonzero(y == c)
        test[gen.choice(rows, size=int(round(test_fraction * len(rows))), replace=False)] = True
    train = np.flatnonzero(~test)
    parts = dirichlet_split(y[train], n_clients, alpha, seed)
    xs, ys, forget = [], [], []
    for k, part in enumerate(parts):
        rows = train[part]
        if len(np.unique(y[rows])) < 2:
            raise ConfigError(f"client {k} of {n_clients} holds {len(rows)} rows of "
                              f"{len(np.unique(y[rows]))} class(es): raise alpha or lower "
                              "the number of clients")
        xk, yk = x[rows], y[rows]
        fk = yk == target if request == "class" else np.zeros(len(yk), dtype=bool)
        if request == "backdoor" and k < poison_clients:
            pick = rng(seed, "fedunlearn", "poison", k).random(len(yk)) < poison_rate
            pick &= yk != target
            xk = np.concatenate([xk, add_trigger(xk[pick])])
            yk = np.concatenate([yk, np.full(int(pick.sum()), target)])
            fk = np.concatenate([fk, np.ones(int(pick.sum()), dtype=bool)])
        xs.append(torch.from_numpy(xk))
        ys.append(yk)
        forget.append(fk)
    if not any(f.any() for f in forget):
        raise ConfigError("no client holds a row to forget")
    return UnlearnFederation(request, target, xs, ys, forget, x[test], y[test])
