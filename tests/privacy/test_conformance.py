"""Conformance tests every registered privacy method must pass (new methods get them free).

Post-training protectors (:data:`~trustrec.privacy.base.PROTECTORS`) and in-training
defenses (:data:`~trustrec.privacy.base.DEFENSES`) run on every registered model that has
the capabilities they declare (``needs``), on real MovieLens-100K with fast configs
(the unlearning tests' ``model_config`` and :data:`FAST_METHOD`: quality is not the
point here, the contract is):

* a protector returns a *copy* whose only change is the released user table (putting the
  old table back gives the old scores bit for bit), leaves the given model untouched, and
  records what it did; a defense returns a fitted model of the asked class with its record;
* both are deterministic for a seed;
* both honour the threat model: labels of users outside ``label_users`` cannot change the
  result (they are relabelled at random here and the output must not move);
* a protected model saves and loads like any other;
* bad input (labels of the wrong length, no attribute, a model without a needed capability,
  an unknown option) is a specific error raised before any work, and changes nothing.

Every pair runs in the fast tier too: the whole file takes about 9 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trustrec.models  # noqa: F401  (registers every model)
import trustrec.privacy  # noqa: F401  (registers the protectors and defenses)
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models import MODELS, load_model, make_model
from trustrec.models.capabilities import DESCRIPTIONS, ReleasesUserTable, has
from trustrec.privacy.base import (
    DEFENSES,
    PROTECTORS,
    label_share_users,
    labels_for,
    make_defense,
    make_protector,
)

from ..unlearn.conftest import model_config
from .conftest import copy_model

#: Small method configs (a method without an entry gets its defaults).
FAST_METHOD: dict[str, dict[str, Any]] = {
    "pot-au-d2d": {"steps": 10, "sample": 256},
    "pot-au-u2u": {"steps": 10},
    "lego": {"rounds": 3, "combine_rounds": 3, "sample": 128, "q_steps": 2},
    "adversarial": {"warmup_epochs": 1, "defense_epochs": 2, "rounds": 2, "adv_steps": 2},
    "raid": {"warmup_epochs": 1, "defense_epochs": 2, "support": 32, "barycenter_iters": 3},
}
#: The model of the bad-input tests.
DEFAULT_MODEL = "bpr"
ATTRIBUTES = ("gender", "age")


def capable(registry, method: str) -> list[str]:
    """The registered models with every capability ``method`` declares it needs."""
    needs = registry.get(method).needs
    return [m for m in MODELS.names() if all(has(MODELS.get(m), c) for c in needs)]


def pairs(registry) -> list:
    return [pytest.param(meth, mod, id=f"{meth}-{mod}")
            for meth in registry.names() for mod in capable(registry, meth)]


@pytest.fixture(scope="module")
def labels(ml100k_split) -> dict[str, np.ndarray]:
    return labels_for(ml100k_split.train, list(ATTRIBUTES))


@pytest.fixture(scope="module")
def seen(labels) -> np.ndarray:
    """The users whose labels a method may use (half of the labelled users, seed 0)."""
    return label_share_users(labels, 0.5, seed=0)


def relabel_hidden(labels: dict[str, np.ndarray], seen: np.ndarray) -> dict[str, np.ndarray]:
    """The same labels on ``seen`` users, other valid labels drawn at random elsewhere."""
    g = np.random.default_rng(123)
    out = {}
    for a, y in labels.items():
        classes = np.unique(y[y >= 0])
        out[a] = np.where(seen, y, g.choice(classes, size=len(y)))
    return out


@pytest.fixture(scope="module")
def trained(ml100k_split):
    """``trained(model)`` → that model fitted once with its fast config, seed 0. Tests
    must not change it (protectors get it as is: leaving it unchanged is tested)."""
    cache: dict[str, Any] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = make_model(name, **model_config(name)).fit(
                ml100k_split.train, ml100k_split.valid, seed=0)
        return cache[name]

    return get


def params_equal(a, b) -> bool:
    return a.params_.keys() == b.params_.keys() and all(
        np.array_equal(a.params_[k].numpy(), b.params_[k].numpy()) for k in a.params_)


def test_methods_are_registered_and_declare_known_capabilities():
    assert {"pot-au-d2d", "pot-au-u2u", "lego", "hide-table"} <= set(PROTECTORS.names())
    assert {"raid", "adversarial"} <= set(DEFENSES.names())
    for registry in (PROTECTORS, DEFENSES):
        for name in registry.names():
            needs = registry.get(name).needs
            assert ReleasesUserTable in needs, name  # what attackers read
            assert set(needs) <= set(DESCRIPTIONS), name
            assert capable(registry, name), f"{name} supports no registered model"


# ---------------------------------------------------------------------------- protectors
@pytest.mark.parametrize(("method", "model"), pairs(PROTECTORS))
def test_protector_contract(method, model, trained, ml100k_split, labels, seen, tmp_path: Path):
    base = trained(model)
    before = copy_model(base)
    users = np.arange(50)
    prot = make_protector(method, **FAST_METHOD.get(method, {}))
    out = prot.protect(base, ml100k_split.train, labels, seed=0, label_users=seen)

    # a copy of the same class; the given model is untouched
    assert out is not base and type(out) is type(base)
    assert params_equal(base, before)
    # the released table changed, kept its shape, and is finite
    old, new = base.released_user_table(), out.released_user_table()
    assert new.shape == old.shape and new.dtype == np.float32
    assert np.isfinite(new).all()
    assert not np.array_equal(new, old), "the method left the released table as it was"
    # nothing but the released table changed: the old table back gives the old scores
    np.testing.assert_array_equal(out.with_released_user_table(old.copy()).score(users),
                                  base.score(users))
    rec = out.fit_info_["protection"]
    assert rec["method"] == method and sorted(rec["attributes"]) == sorted(ATTRIBUTES)
    assert rec["labelled_users"] == int(seen.sum())

    # deterministic for a seed; hidden users' labels cannot change the result
    again = prot.protect(base, ml100k_split.train, relabel_hidden(labels, seen), seed=0,
                         label_users=seen)
    np.testing.assert_array_equal(again.released_user_table(), new)

    # saves and loads like any other model
    out.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").score(users), out.score(users))


@pytest.mark.parametrize("method", PROTECTORS.names())
def test_protector_bad_input_changes_nothing(method, trained, ml100k_split, labels):
    base = trained(DEFAULT_MODEL)
    before = copy_model(base)
    prot = make_protector(method, **FAST_METHOD.get(method, {}))
    with pytest.raises(DataFormatError):
        prot.protect(base, ml100k_split.train, {"gender": labels["gender"][:-1]})
    with pytest.raises(ConfigError, match="attribute"):
        prot.protect(base, ml100k_split.train, {})

    class NoTable:  # a recommender that releases no user table
        name = "no-table"

        def score(self, users):
            return np.zeros((len(users), 3), dtype=np.float32)

    with pytest.raises(ConfigError, match="released user table"):
        prot.protect(NoTable(), ml100k_split.train, labels)
    assert params_equal(base, before)


@pytest.mark.parametrize("method", PROTECTORS.names() + DEFENSES.names())
def test_an_unknown_option_is_refused_with_a_suggestion(method):
    make = make_protector if method in PROTECTORS else make_defense
    field = next(iter(make(method).config_dict()))
    with pytest.raises(ConfigError, match=repr(field)):
        make(method, **{field + "x": 1})


# ---------------------------------------------------------------------------- defenses
@pytest.mark.parametrize(("method", "model"), pairs(DEFENSES))
def test_defense_contract(method, model, ml100k_split, labels, seen):
    d = make_defense(method, **FAST_METHOD.get(method, {}))
    args = (model, model_config(model), ml100k_split.train, ml100k_split.valid)
    out = d.fit(*args, labels, seed=0, label_users=seen)

    assert type(out) is MODELS.get(model)
    table = out.released_user_table()
    assert table.shape[0] == ml100k_split.train.n_users and np.isfinite(table).all()
    rec = out.fit_info_["defense"]
    assert rec["defense"] == method and sorted(rec["attributes"]) == sorted(ATTRIBUTES)
    assert rec["labelled_users"] == int(seen.sum())
    assert len(rec["steps"]) >= 1  # the defense step ran

    # deterministic for a seed; hidden users' labels cannot change the result
    again = d.fit(*args, relabel_hidden(labels, seen), seed=0, label_users=seen)
    np.testing.assert_array_equal(again.released_user_table(), table)
    # and a plain fit of the same model is not what came out (the defense acted)
    plain = make_model(model, **model_config(model)).fit(ml100k_split.train,
                                                         ml100k_split.valid, seed=0)
    assert not np.array_equal(plain.released_user_table(), table)


@pytest.mark.parametrize("method", DEFENSES.names())
def test_defense_refuses_before_training(method, ml100k_split, labels, monkeypatch):
    d = make_defense(method, **FAST_METHOD.get(method, {}))
    cfg = model_config(DEFAULT_MODEL)
    with pytest.raises(DataFormatError):
        d.fit(DEFAULT_MODEL, cfg, ml100k_split.train, None, {"gender": labels["gender"][:-1]})

    # a registered model without a capability the defense needs: refused by name
    base = MODELS.get(DEFAULT_MODEL)
    missing = next(c for c in d.needs if c is not ReleasesUserTable)
    lacking = type("Lacking", (base,), {name: None for name in
                                        {n for n in vars(missing) if not n.startswith("_")}
                                        - {"fit"}})
    lacking.name = "lacking"
    monkeypatch.setitem(MODELS._items, "lacking", lacking)

    def no_training(*a, **k):
        raise AssertionError("trained before checking the model's capabilities")

    monkeypatch.setattr(lacking, "fit", no_training)
    with pytest.raises(ConfigError, match="'lacking'"):
        d.fit("lacking", cfg, ml100k_split.train, None, labels)
