"""SISA: partition, per-shard exactness, untouched shards, aggregation, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.selection import select_forget_interactions, select_forget_users
from trustrec.errors import ConfigError, UnknownNameError
from trustrec.models import MODELS, make_model
from trustrec.seeding import child_seed
from trustrec.unlearn import AGGREGATIONS, SISA, ForgetRequest, balanced_partition

from .conftest import build, fit, model_config, params_equal


def fresh_shard(model: str, assignment: np.ndarray, s: int, train, valid, seed: int):
    """Shard ``s`` trained from scratch on the given rows of its users, with its seed."""
    users = np.flatnonzero(assignment == s)
    return make_model(model, **model_config(model)).fit(
        train.restrict_users(users), valid.restrict_users(users),
        seed=child_seed(seed, "shard", s))


@pytest.mark.parametrize(("n", "k"), [(943, 10), (943, 3), (10, 10), (11, 4), (5, 1)])
def test_balanced_partition(n, k):
    a = balanced_partition(n, k, seed=0)
    assert a.shape == (n,) and a.dtype == np.int64
    sizes = np.bincount(a, minlength=k)
    assert len(sizes) == k and sizes.max() - sizes.min() <= 1 and sizes.sum() == n
    np.testing.assert_array_equal(a, balanced_partition(n, k, seed=0))
    if n > k > 1:
        assert not np.array_equal(a, balanced_partition(n, k, seed=1))
        assert not np.array_equal(a, np.arange(n) % k)  # shuffled, not round-robin by index


def test_fit_trains_each_shard_on_its_users_only(split):
    u = fit("sisa", split, seed=7)
    assert isinstance(u, SISA) and len(u.models_) == 3
    np.testing.assert_array_equal(u.assignment_, balanced_partition(split.train.n_users, 3, 7))
    for s in range(3):
        tr, va = u.shard_data(s)
        assert set(np.unique(tr.users)) <= set(u.shard_users(s))
        assert set(np.unique(va.users)) <= set(u.shard_users(s))
        assert params_equal(u.models_[s].params_,
                            fresh_shard("bpr", u.assignment_, s, split.train, split.valid,
                                        7).params_)
        assert u.shard_seed(s) == child_seed(7, "shard", s)
    rows = u.history_[0]["details"]["shard_rows"]
    assert sum(rows) == split.train.n_interactions


def check_exact_after(u, model: str, req: ForgetRequest, split, seed: int, before: list):
    remaining = split.train.without(req)
    valid = split.valid.select(~req.match_rows(split.valid))
    removed_users = np.concatenate([split.train.users[req.row_mask(split.train)],
                                    split.valid.users[req.match_rows(split.valid)]])
    hit = sorted(set(u.assignment_[removed_users].tolist()))
    rep = u.forget(req)
    assert rep.details["shards"] == hit
    assert rep.retrained == [f"shard {s}" for s in hit]
    assert len(rep.details["shard_seconds"]) == len(hit)
    for s in range(u.n_shards):
        ref = fresh_shard(model, u.assignment_, s, remaining, valid, seed)
        assert params_equal(u.models_[s].params_, ref.params_), f"shard {s} differs"
        if s not in hit:  # untouched: the same object and the same tensors
            assert u.models_[s] is before[s]["model"]
            for k, t in before[s]["params"].items():
                assert u.models_[s].params_[k] is t
    return rep


def snapshot_shards(u) -> list:
    return [{"model": m, "params": dict(m.params_)} for m in u.models_]


@pytest.mark.parametrize("model", MODELS.names())
def test_forget_users_is_exact_per_shard(model, split):
    u = fit("sisa", split, model=model, seed=1, n_shards=4)
    req = ForgetRequest(users=[3, 17])
    before = snapshot_shards(u)
    rep = check_exact_after(u, model, req, split, 1, before)
    assert 1 <= len(rep.details["shards"]) <= 2


def test_forget_sequence_is_exact_and_leaves_other_shards_alone(split):
    u = fit("sisa", split, seed=2, n_shards=5)
    users = select_forget_users(split.train, "core", 0.01, seed=0)[:2]
    req1 = ForgetRequest(users=users)
    before = snapshot_shards(u)
    saved = {s: {k: t.clone() for k, t in before[s]["params"].items()} for s in range(5)}
    rep1 = check_exact_after(u, "bpr", req1, split, 2, before)
    for s in set(range(5)) - set(rep1.details["shards"]):
        for k, t in saved[s].items():
            assert torch.equal(u.models_[s].params_[k], t)
    # a second request, validated against what remains, exact w.r.t. both
    pairs = select_forget_interactions(u.train_, 0.0005, seed=1)
    req2 = ForgetRequest(pairs=pairs)
    rep2 = u.forget(req2)
    both = ForgetRequest(users=users, pairs=pairs)
    remaining = split.train.without(both)
    valid = split.valid.select(~both.match_rows(split.valid))
    for s in range(5):
        ref = fresh_shard("bpr", u.assignment_, s, remaining, valid, 2)
        assert params_equal(u.models_[s].params_, ref.params_)
    assert set(rep2.details["shards"]) == set(u.assignment_[pairs[:, 0]].tolist())


def test_item_request_retrains_every_shard_holding_the_item(split):
    u = fit("sisa", split, seed=0, n_shards=6)
    counts = split.train.item_counts()
    rare = int(np.flatnonzero(counts == 2)[0])  # held by at most two shards
    holders = sorted(set(u.assignment_[split.train.users[split.train.items == rare]].tolist())
                     | set(u.assignment_[split.valid.users[split.valid.items == rare]].tolist()))
    before = snapshot_shards(u)
    rep = check_exact_after(u, "bpr", ForgetRequest(items=[rare]), split, 0, before)
    assert rep.details["shards"] == holders and len(holders) < 6
    popular = int(np.argmax(u.train_.item_counts()))
    rep = u.forget(ForgetRequest(items=[popular]))
    assert rep.details["shards"] == list(range(6))


def test_owner_aggregation_scores_with_the_owning_shard(split):
    u = fit("sisa", split)
    users = np.array([5, 0, 942, 100, 5, 37])
    s = u.score(users)
    for row, user in enumerate(users):
        own = u.models_[u.assignment_[user]]
        # equal up to float32 rounding (BLAS may sum in another order for another batch)
        np.testing.assert_allclose(s[row], own.score(np.array([user]))[0], rtol=1e-5,
                                   atol=1e-6)
    assert "owner" in AGGREGATIONS


def test_average_aggregation_is_the_mean_of_all_shard_models(split):
    u = fit("sisa", split, aggregation="average")
    users = np.array([5, 0, 942, 100])
    mean = np.mean([m.score(users) for m in u.models_], axis=0)
    np.testing.assert_allclose(u.score(users), mean, rtol=1e-5, atol=1e-6)
    # the owner's model alone ranks differently: the average is not the owner in disguise
    owner = fit("sisa", split)
    assert not np.allclose(owner.score(users), u.score(users))
    assert "average" in AGGREGATIONS


def test_forgotten_user_keeps_its_shard_and_is_scored(split):
    u = fit("sisa", split)
    a = u.assignment_.copy()
    u.forget(ForgetRequest(users=[8]))
    np.testing.assert_array_equal(u.assignment_, a)
    assert u.score(np.array([8])).shape == (1, split.train.n_items)


def test_config_errors(split):
    with pytest.raises(ConfigError, match="n_shards"):
        build("sisa", n_shards=0)
    with pytest.raises(ConfigError, match="n_shards"):
        build("sisa", n_shards=2.5)
    with pytest.raises(ConfigError, match="did you mean 'n_shards'"):
        build("sisa", n_shard=3)
    with pytest.raises(ConfigError, match="aggregation.*available: average, owner"):
        build("sisa", aggregation="mean")
    with pytest.raises(ConfigError, match="exceeds the number of users"):
        build("sisa", n_shards=split.train.n_users + 1).fit(split.train, split.valid)
    with pytest.raises(UnknownNameError, match="unknown model"):
        build("sisa", model="bpr-typo")
    with pytest.raises(ConfigError, match="unknown option"):
        SISA("bpr", {"epoch": 2})


@pytest.mark.parametrize("model", ["bpr", "wmf"])
def test_parallel_workers_give_bitwise_the_same_shards(model, split):
    """Shards (re)trained in threads are exactly the shards trained one by one."""
    from .conftest import fit as fit_fast

    one = fit_fast("sisa", split, model=model, workers=1)
    two = fit_fast("sisa", split, model=model, workers=2)
    for a, b in zip(one.models_, two.models_, strict=True):
        assert params_equal(a.params_, b.params_)
    users = np.flatnonzero(one.assignment_ < 2)[:6]  # users of two shards
    ra, rb = one.forget(ForgetRequest(users=users)), two.forget(ForgetRequest(users=users))
    assert ra.details["shards"] == rb.details["shards"] and len(rb.details["shards"]) == 2
    for a, b in zip(one.models_, two.models_, strict=True):
        assert params_equal(a.params_, b.params_)
