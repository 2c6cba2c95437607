"""Conformance tests every registered unlearning method must pass (new methods get them free).

Each method wraps every registered model that has what the method needs (its ``needs``),
on real MovieLens-100K, with fast configs (see ``conftest.FAST_MODEL`` / ``FAST_METHOD``;
add an entry there when a new method or model needs one). A (method, model) pair that is
not supported is tested too: constructing it must raise a ConfigError naming the model.

Tiers: in the fast tier (``-m "not slow"``) every method runs the whole suite on
:data:`DEFAULT_MODEL` and a short fit-forget-score check on one more model
(:func:`rotation`, so every model is wrapped), and construction is checked for every pair;
the whole suite on the other 36 pairs is marked slow (measured: about 3 min on 2 busy
cores). A fitted unlearner is reused within the module as a deep copy (:func:`fitted`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable

import numpy as np
import pytest

import trustrec.models  # noqa: F401  (registers every model)
from trustrec.data.selection import (
    select_forget_interactions,
    select_forget_items,
    select_forget_users,
)
from trustrec.errors import ConfigError, InvalidRequestError, UnsupportedRequestError
from trustrec.models import MODELS, make_model
from trustrec.models.capabilities import DESCRIPTIONS, has
from trustrec.unlearn import UNLEARNERS, ForgetReport, ForgetRequest, Retrain, Unlearner

from .conftest import build, fit, reachable_datasets, same_snapshot, snapshot

METHODS = UNLEARNERS.names()
MODEL_NAMES = MODELS.names()
GRAINS = ("user", "interaction", "item")
#: The model each method runs the whole suite on in the fast tier (when it supports it).
DEFAULT_MODEL = "bpr"


def _has_epochs(model: str) -> bool:
    return "epochs" in {f.name for f in dataclasses.fields(make_model(model).config)}


def supported(method: str, model: str) -> bool:
    """Whether ``model`` has every capability ``method`` declares it needs (the method's own
    ``needs``, :mod:`trustrec.models.capabilities`); fine-tuning also needs an ``epochs``
    option to shorten."""
    cls = UNLEARNERS.get(method)
    if not all(has(MODELS.get(model), c) for c in cls.needs):
        return False
    return method != "finetune" or _has_epochs(model)


SUPPORTED = [(m, mod) for m in METHODS for mod in MODEL_NAMES if supported(m, mod)]
UNSUPPORTED = [(m, mod) for m in METHODS for mod in MODEL_NAMES if not supported(m, mod)]


def fast_model(method: str) -> str:
    """The model ``method`` runs the whole suite on in the fast tier."""
    if supported(method, DEFAULT_MODEL):
        return DEFAULT_MODEL
    return next(mod for m, mod in SUPPORTED if m == method)


def pairs(*, all_fast: bool = False) -> list:
    """Every supported (method, model) as a parameter; the pairs other than each method's
    :func:`fast_model` are marked slow unless ``all_fast``."""
    return [pytest.param(m, mod, id=f"{m}-{mod}",
                         marks=() if all_fast or mod == fast_model(m) else pytest.mark.slow)
            for m, mod in SUPPORTED]


def fresh_copy(u: Unlearner) -> Unlearner:
    """An independent deep copy of a fitted unlearner that shares its datasets (they are
    immutable, and tests check ``u.train_ is split.train``)."""
    return copy.deepcopy(u, {id(d): d for d in reachable_datasets(u)})


@pytest.fixture(scope="module")
def fitted(split) -> Callable[[str, str], Unlearner]:
    """``fitted(method, model)`` → a fresh copy of that unlearner fitted once per module
    on the ML-100K split with seed 0 (a fit costs more than the tests that use it;
    :func:`test_determinism` checks the copy against a fresh fit, bit for bit)."""
    cache: dict[tuple[str, str], Unlearner] = {}

    def get(method: str, model: str) -> Unlearner:
        if (method, model) not in cache:
            cache[method, model] = fit(method, split, model)
        return fresh_copy(cache[method, model])

    return get


def test_methods_are_registered():
    assert {"retrain", "sisa"} <= set(METHODS)


def test_every_pair_is_tested_and_every_method_has_a_model():
    """Each (method, model) is either supported (run below) or must be refused (tested
    below): none is left out, and every method wraps at least one model."""
    assert set(SUPPORTED) | set(UNSUPPORTED) == {(m, mod) for m in METHODS
                                                 for mod in MODEL_NAMES}
    assert not set(SUPPORTED) & set(UNSUPPORTED)
    for m in METHODS:
        assert any(mm == m for mm, _ in SUPPORTED), f"{m} supports no registered model"
    # every capability a method needs is a documented one
    for m in METHODS:
        assert set(UNLEARNERS.get(m).needs) <= set(DESCRIPTIONS), m


@pytest.mark.parametrize(("method", "model"), [pytest.param(m, mod, id=f"{m}-{mod}")
                                                for m, mod in UNSUPPORTED])
def test_an_unsupported_pair_is_a_config_error_at_construction(method, model):
    with pytest.raises(ConfigError) as info:
        build(method, model)
    msg = str(info.value)
    assert repr(model) in msg, msg  # names the model
    # and the models that would do
    assert all(mod in msg for mm, mod in SUPPORTED if mm == method), msg


def request_for(grain: str, train, seed: int = 0) -> ForgetRequest:
    """A realistic request of one grain, chosen by the CURE4Rec selection rules."""
    if grain == "user":
        return ForgetRequest(users=select_forget_users(train, "random", 0.05, seed))
    if grain == "interaction":
        return ForgetRequest(pairs=select_forget_interactions(train, 0.01, seed))
    return ForgetRequest(items=select_forget_items(train, 0.01, seed))


def assert_unchanged(u, before: dict) -> None:
    assert u.train_ is before["train"] and u.valid_ is before["valid"]
    assert same_snapshot(u, before["params"])
    assert len(u.history_) == before["history"]
    np.testing.assert_array_equal(u.score(np.arange(20)), before["scores"])


def state_of(u) -> dict:
    return {"train": u.train_, "valid": u.valid_, "params": snapshot(u),
            "history": len(u.history_), "scores": u.score(np.arange(20))}


# ---------------------------------------------------------------------------- basics
@pytest.mark.parametrize(("method", "model"), pairs(all_fast=True))
def test_class_contract(method, model):
    cls = UNLEARNERS.get(method)
    assert cls.name == method
    assert isinstance(cls.exact, bool)
    assert cls.supports <= set(GRAINS) and cls.supports
    u = build(method, model)
    assert isinstance(u, Unlearner) and u.model == model
    with pytest.raises(RuntimeError, match="not fitted"):
        u.score(np.arange(3))
    with pytest.raises(RuntimeError, match="not fitted"):
        u.forget(ForgetRequest(users=[0]))


@pytest.mark.parametrize("method", METHODS)
def test_config_typo_is_an_error(method):
    with pytest.raises(ConfigError, match="unknown option"):
        build(method, not_an_option=1)


@pytest.mark.parametrize(("method", "model"), pairs())
def test_fit_then_score(method, model, split, fitted):
    u = fitted(method, model)
    assert u.train_ is split.train and u.valid_ is split.valid and u.seed_ == 0
    users = np.array([0, 5, 942, 5])
    s = u.score(users)
    assert s.shape == (4, split.train.n_items) and s.dtype == np.float32
    assert np.isfinite(s).all()
    np.testing.assert_array_equal(s[1], s[3])
    assert u.score(np.zeros(0, np.int64)).shape == (0, split.train.n_items)
    with pytest.raises(IndexError, match="out of range"):
        u.score(np.array([split.train.n_users]))
    assert [h["event"] for h in u.history_] == ["fit"]
    json.dumps(u.history_)


# ---------------------------------------------------------------------------- forgetting
def check_report(rep: ForgetReport, u, method: str, train_before, removed: np.ndarray):
    assert rep.method == method and rep.exact == type(u).exact
    assert rep.rows_removed == int(removed.sum()) > 0
    assert rep.users_affected == np.unique(train_before.users[removed]).tolist()
    # only the negative controls retrain nothing (they are not unlearning methods)
    assert rep.retrained or method in ("noop", "reset-rows")
    assert all(isinstance(r, str) for r in rep.retrained)
    assert rep.seconds > 0
    assert rep.rows_remaining == train_before.n_interactions - rep.rows_removed
    assert rep.rows_remaining == u.train_.n_interactions
    assert "valid_rows_removed" in rep.details
    text = json.dumps(rep.to_json())
    assert json.loads(text)["rows_removed"] == rep.rows_removed


def rotation() -> list[tuple[str, str]]:
    """One more model per method for the fast tier, so that every model is wrapped by some
    method: each method takes the model other than :data:`DEFAULT_MODEL` (and its own
    fast model) that it can wrap and that the methods before it used least (ties: the
    registry's order); a model only few methods can wrap is therefore taken by them
    first (methods are served fewest-options first)."""
    cycle = [mod for mod in MODEL_NAMES if mod != DEFAULT_MODEL]
    options = {m: [mod for mod in cycle if supported(m, mod) and mod != fast_model(m)]
               for m in METHODS}
    used = dict.fromkeys(cycle, 0)
    out: list[tuple[str, str]] = []
    for m in sorted(METHODS, key=lambda m: (len(options[m]), m)):
        if options[m]:
            mod = min(options[m], key=lambda mod: (used[mod], cycle.index(mod)))
            used[mod] += 1
            out.append((m, mod))
    return sorted(out)


SMOKE_PAIRS = rotation()


def test_the_fast_tier_wraps_every_model():
    fast = {(m, fast_model(m)) for m in METHODS} | set(SMOKE_PAIRS)
    assert {mod for _, mod in fast} == set(MODEL_NAMES)
    assert {m for m, _ in SMOKE_PAIRS} == {m for m, _ in SUPPORTED
                                           if sum(mm == m for mm, _ in SUPPORTED) > 1}
    assert set(SMOKE_PAIRS) <= set(SUPPORTED)


@pytest.mark.parametrize(("method", "model"), [pytest.param(m, mod, id=f"{m}-{mod}")
                                                for m, mod in SMOKE_PAIRS])
def test_fit_forget_score_on_another_model(method, model, split, fitted):
    """The fast tier's check of a pair whose whole suite is slow (:func:`rotation`): fit,
    forget users (or the first grain the method supports), score (about 1 s per pair)."""
    u = fitted(method, model)
    assert u.model == model
    grain = "user" if "user" in type(u).supports else sorted(type(u).supports)[0]
    req = request_for(grain, split.train)
    removed = req.row_mask(split.train)
    rep = u.forget(req)
    check_report(rep, u, method, split.train, removed)
    np.testing.assert_array_equal(u.train_.pair_keys(), split.train.pair_keys()[~removed])
    s = u.score(np.arange(20))
    assert s.shape == (20, split.train.n_items) and s.dtype == np.float32
    assert np.isfinite(s).all()
    assert [h["event"] for h in u.history_] == ["fit", "forget"]


@pytest.mark.parametrize(("method", "model"), pairs())
@pytest.mark.parametrize("grain", GRAINS)
def test_forget_one_grain(method, model, grain, split, fitted):
    u = fitted(method, model)
    train, valid = split.train, split.valid
    req = request_for(grain, train)
    if grain not in type(u).supports:
        before = state_of(u)
        with pytest.raises(UnsupportedRequestError):
            u.forget(req)
        assert_unchanged(u, before)
        return
    removed = req.row_mask(train)
    valid_removed = req.match_rows(valid)
    rep = u.forget(req)
    check_report(rep, u, method, train, removed)
    assert rep.details["valid_rows_removed"] == int(valid_removed.sum())
    # the remaining data is exactly the old data minus the named rows, in order
    np.testing.assert_array_equal(u.train_.pair_keys(), train.pair_keys()[~removed])
    np.testing.assert_array_equal(u.valid_.pair_keys(), valid.pair_keys()[~valid_removed])
    if grain == "user":
        assert not np.isin(u.train_.users, req.users).any()
        assert not np.isin(u.valid_.users, req.users).any()
        assert rep.users_affected == req.users.tolist()
    elif grain == "item":
        assert not np.isin(u.train_.items, req.items).any()
        assert not np.isin(u.valid_.items, req.items).any()
    else:
        keys = req.pairs[:, 0] * train.n_items + req.pairs[:, 1]
        assert not np.isin(u.train_.pair_keys(), keys).any()
        # other rows of the same users stay
        assert np.isin(u.train_.users, req.pairs[:, 0]).any()
    assert u.score(np.arange(10)).shape == (10, train.n_items)
    assert [h["event"] for h in u.history_] == ["fit", "forget"]


@pytest.mark.parametrize(("method", "model"), pairs())
def test_forgotten_rows_are_gone_from_every_internal_copy(method, model, split, fitted):
    u = fitted(method, model)
    forgotten = []
    for grain, seed in (("user", 1), ("interaction", 2), ("item", 3)):
        if grain not in type(u).supports:
            continue
        req = request_for(grain, u.train_, seed)  # chosen among the rows still there
        forgotten.append(split.train.pair_keys()[req.match_rows(split.train)])
        forgotten.append(split.valid.pair_keys()[req.match_rows(split.valid)])
        u.forget(req)
    forgotten = np.unique(np.concatenate(forgotten))
    assert len(forgotten) > 0
    found = reachable_datasets(u)
    assert any(d is u.train_ for d in found) and any(d is u.valid_ for d in found)
    for ds in found:
        hits = np.isin(ds.pair_keys(), forgotten)
        assert not hits.any(), f"{ds!r} still holds {int(hits.sum())} forgotten rows"
    # the history keeps counts only, never the ids
    for rec in u.history_:
        assert not {"users", "pairs", "items", "users_affected", "request"} & set(rec)
        for v in rec.values():
            assert not (isinstance(v, list) and v and all(isinstance(x, int) for x in v)
                        and rec["event"] == "forget")


@pytest.mark.parametrize(("method", "model"), pairs())
def test_sequence_of_requests(method, model, split, fitted):
    u = fitted(method, model)
    train = split.train
    users = select_forget_users(train, "random", 0.04, seed=0)
    a, b = users[: len(users) // 2], users[len(users) // 2:]
    ra = u.forget(ForgetRequest(users=a))
    rb = u.forget(ForgetRequest(users=b))
    assert ra.rows_removed + rb.rows_removed == int(np.isin(train.users, users).sum())
    assert rb.rows_remaining == train.n_interactions - ra.rows_removed - rb.rows_removed
    assert not np.isin(u.train_.users, users).any()
    before = state_of(u)
    with pytest.raises(InvalidRequestError, match="not in the training data"):
        u.forget(ForgetRequest(users=a[:1]))
    assert_unchanged(u, before)
    # a pair of a forgotten user is no longer a training interaction
    row = int(np.flatnonzero(train.users == a[0])[0])
    with pytest.raises(InvalidRequestError, match="not in"):
        u.forget(ForgetRequest(pairs=[[a[0], train.items[row]]]))
    assert_unchanged(u, before)
    if "interaction" in type(u).supports:
        # forgetting an interaction, then the rest of that user, then its item
        keep_user = int(np.setdiff1d(train.active_users(), users)[0])
        item = int(u.train_.items[np.flatnonzero(u.train_.users == keep_user)[0]])
        u.forget(ForgetRequest(pairs=[[keep_user, item]]))
        u.forget(ForgetRequest(users=[keep_user]))
        assert not (u.train_.users == keep_user).any()
    if "item" in type(u).supports:
        item = int(np.argmax(u.train_.item_counts()))
        u.forget(ForgetRequest(items=[item]))
        with pytest.raises(InvalidRequestError, match="not in the training data"):
            u.forget(ForgetRequest(items=[item]))


@pytest.mark.parametrize(("method", "model"), pairs())
def test_bad_requests_raise_and_change_nothing(method, model, split, fitted):
    u = fitted(method, model)
    train = split.train
    before = state_of(u)
    with pytest.raises(InvalidRequestError, match="empty"):
        ForgetRequest(users=[])
    with pytest.raises(InvalidRequestError, match="duplicate"):
        ForgetRequest(users=[3, 3])
    with pytest.raises(InvalidRequestError, match="duplicate"):
        ForgetRequest(pairs=[[0, 1], [0, 1]])
    absent = int(np.setdiff1d(np.arange(train.n_items), train.items[train.users == 0])[0])
    bad = [
        ForgetRequest(users=[train.n_users]),                 # unknown user
        ForgetRequest(users=[0, train.n_users + 5]),          # one known, one unknown
        ForgetRequest(items=[train.n_items]),                 # unknown item
        ForgetRequest(pairs=[[0, absent]]),                   # pair not in the data
        ForgetRequest(pairs=[[train.n_users, 0]]),            # pair outside the id space
        ForgetRequest(users=[1], pairs=[[0, absent]]),        # valid part + bad part
    ]
    for req in bad:
        with pytest.raises(InvalidRequestError):
            u.forget(req)
        assert_unchanged(u, before)
    with pytest.raises(InvalidRequestError, match="ForgetRequest"):
        u.forget({"users": [0]})
    assert_unchanged(u, before)


def test_unsupported_grain_is_a_specific_error(split):
    class UsersOnly(Retrain):  # not registered: a method that supports users only
        supports = frozenset({"user"})

    u = UsersOnly("bpr", {"epochs": 2, "dim": 8}).fit(split.train, split.valid)
    before = state_of(u)
    for req in (request_for("item", split.train), request_for("interaction", split.train),
                ForgetRequest(users=[0], items=[0])):
        with pytest.raises(UnsupportedRequestError, match="cannot forget"):
            u.forget(req)
        assert_unchanged(u, before)
    assert isinstance(UnsupportedRequestError("x"), NotImplementedError)
    u.forget(ForgetRequest(users=[0]))


@pytest.mark.parametrize(("method", "model"), pairs())
def test_determinism(method, model, split, fitted):
    req = request_for("user", split.train)
    # a fit made earlier in the session (other tests ran meanwhile), and a fresh one
    a, b = fitted(method, model), fit(method, split, model, seed=0)
    users = np.arange(split.train.n_users)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    ra, rb = a.forget(req), b.forget(req)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    ja, jb = ra.to_json(), rb.to_json()
    for j in (ja, jb):
        j.pop("seconds")
        j["details"].pop("shard_seconds", None)
    assert ja == jb
    c = fit(method, split, model, seed=4)
    assert not np.array_equal(a.score(users[:50]), c.score(users[:50]))


def test_report_to_json_converts_numpy():
    rep = ForgetReport(method="x", exact=True, request={"users": np.array([1, 2])},
                       rows_removed=np.int64(3), users_affected=[np.int32(1), np.int64(2)],
                       retrained=["full"], seconds=np.float64(0.5),
                       rows_remaining=np.int64(7),
                       details={"shards": np.array([0, 2]), "flag": np.bool_(True),
                                "nested": {1: (np.int16(4),)}})
    out = json.loads(json.dumps(rep.to_json()))
    assert out["users_affected"] == [1, 2] and out["details"]["shards"] == [0, 2]
    assert out["details"]["nested"] == {"1": [4]} and out["details"]["flag"] is True
    s = rep.summary()
    assert s["n_users"] == 2 and s["n_users_affected"] == 2 and "users" not in s
    json.dumps(s)
