"""A fair-classification federation: a table split across clients, each client's rows
split into train / hold-out / test, features standardised by the federation's pooled
statistics, and the global and local fairness measures every method is judged by.

One client is the centralised case (OptFair is FedFACT with one client and no local
constraint). With ``n_clients ≥ 2`` the clients come from
:func:`~trustrec.data.tabular.dirichlet_clients` (label skew, seeded).

Measures on the test rows (hard predictions):

- ``accuracy`` over every client's test rows;
- ``global_disparity``: the criterion's largest ``|d_c|`` over the pooled test rows (the
  figure ξ bounds; for DP ``max_a |P(h = k | A = a) − P(h = k)|``) and ``global_gap``, the
  largest between-group difference (fairlearn's *difference*);
- ``local_disparity``: the same within each client's test rows; ``mean_local_disparity``
  and ``max_local_disparity`` over the clients.

Every figure counts only the (group, event) cells with at least :data:`MIN_GROUP_ROWS`
rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trustrec.data.tabular import TabularData, dirichlet_clients
from trustrec.errors import ConfigError
from trustrec.fairclf.criteria import constraints, max_disparity, max_gap
from trustrec.federated.classify import federated_scaler
from trustrec.seeding import rng

PARTS = ("train", "hold", "test")
#: A group's rate over fewer rows than this is left out of a measured disparity: with 30
#: rows its standard error is up to 0.09, larger than any budget worth asking for.
#: COMPAS's Native American (≈ 11 rows in all) and Asian (≈ 31) defendants fall under it.
MIN_GROUP_ROWS = 30


@dataclass(frozen=True)
class FairFederation:
    """Rows of ``data`` per client and split (indices into the table).

    Attributes:
        data: the table.
        train, hold, test: one row-index array per client.
        mean, std: the pooled standardisation of the training rows.
    """

    data: TabularData
    train: list[np.ndarray]
    hold: list[np.ndarray]
    test: list[np.ndarray]
    mean: np.ndarray
    std: np.ndarray

    @property
    def n_clients(self) -> int:  # noqa: D102
        return len(self.train)

    def rows(self, part: str) -> list[np.ndarray]:
        """Each client's rows of ``part`` (``train``, ``hold`` or ``test``)."""
        if part not in PARTS:
            raise ConfigError(f"unknown split {part!r}; choose one of {', '.join(PARTS)}")
        return getattr(self, part)

    def x(self, part: str) -> list[torch.Tensor]:
        """Each client's standardised features of ``part``."""
        return [torch.from_numpy(((self.data.x[r] - self.mean) / self.std).astype(np.float32))
                for r in self.rows(part)]

    def pooled(self, part: str, values: list[np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(y, group, values)`` of ``part`` concatenated over clients."""
        rows = np.concatenate(self.rows(part))
        joined = None if values is None else np.concatenate(values)
        return self.data.y[rows], self.data.group[rows], joined


def make_federation(data: TabularData, n_clients: int, alpha: float, seed: int,
                    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
                    ) -> FairFederation:
    """Split ``data`` across ``n_clients`` (1: centralised) and each client's rows into
    train / hold-out / test by ``fractions`` (seeded by ``(seed, client)``).

    Raises:
        ConfigError: bad fractions, ``alpha`` ≤ 0, fewer than 1 client, or a client whose
            training rows hold a single class or a single group.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"split fractions must be three positive shares summing to 1, got "
                          f"{fractions}")
    if n_clients < 1:
        raise ConfigError(f"a federation needs at least 1 client, got {n_clients}")
    if not alpha > 0:
        raise ConfigError(f"the Dirichlet concentration must be > 0, got {alpha}")
    parts = ([np.arange(len(data))] if n_clients == 1
             else dirichlet_clients(data, n_clients, alpha, seed))
    split: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for k, rows in enumerate(parts):
        rows = rows[rng(seed, "fedclf", "split", k).permutation(len(rows))]
        cuts = np.round(np.cumsum(fractions)[:-1] * len(rows)).astype(np.int64)
        for name, part in zip(PARTS, np.split(rows, cuts), strict=True):
            split[name].append(np.sort(part))
        tr = split["train"][-1]
        if len(np.unique(data.y[tr])) < 2 or len(np.unique(data.group[tr])) < 2:
            raise ConfigError(f"client {k}'s training rows hold a single class or a single "
                              "group: fewer clients, a larger alpha or another seed")
    mean, std = federated_scaler(data.x, split["train"])
    return FairFederation(data, split["train"], split["hold"], split["test"], mean, std)


def fairness_measures(fed: FairFederation, criterion: str, pred: list[np.ndarray],
                      part: str = "test", min_rows: int = MIN_GROUP_ROWS
                      ) -> dict[str, float | list[float]]:
    """The module docstring's measures of per-client hard predictions on ``part``, each
    over the (group, event) cells with at least ``min_rows`` rows (:data:`MIN_GROUP_ROWS`;
    a client with no measurable cell gets NaN, left out of the mean)."""
    data = fed.data
    cons = constraints(criterion, data.n_groups, data.n_classes)
    y, group, p = fed.pooled(part, pred)
    assert p is not None
    local = []
    for rows, pk in zip(fed.rows(part), pred, strict=True):
        yk, gk = data.y[rows], data.group[rows]
        local.append(max_disparity(cons, pk, yk, gk, data.n_classes, min_rows))
    local_arr = np.asarray(local)
    measurable = np.isfinite(local_arr).any()
    return {
        "accuracy": float(np.mean(p == y)),
        "global_disparity": max_disparity(cons, p, y, group, data.n_classes, min_rows),
        "global_gap": max_gap(cons, p, y, group, data.n_classes, min_rows),
        "mean_local_disparity": float(np.nanmean(local_arr)) if measurable else float("nan"),
        "max_local_disparity": float(np.nanmax(local_arr)) if measurable else float("nan"),
        "local_disparity": [float(v) for v in local],
    }
