"""Retrain: forgetting equals a fresh fit on the remaining rows, bitwise."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.selection import select_forget_interactions, select_forget_items
from trustrec.models import MODELS, make_model
from trustrec.seeding import child_seed
from trustrec.unlearn import ForgetRequest, Retrain

from .conftest import fit, model_config, params_equal


def fresh(model: str, train, valid, req: ForgetRequest, seed: int):
    """The model trained from scratch on what remains after ``req``."""
    return make_model(model, **model_config(model)).fit(
        train.without(req), valid.select(~req.match_rows(valid)),
        seed=child_seed(seed, "model"))


def test_fit_uses_the_derived_seed(split):
    u = fit("retrain", split, seed=5)
    assert isinstance(u, Retrain) and u.model_seed() == child_seed(5, "model")
    ref = make_model("bpr", **model_config("bpr")).fit(split.train, split.valid,
                                                        seed=child_seed(5, "model"))
    assert params_equal(u.model_.params_, ref.params_)
    np.testing.assert_array_equal(u.user_embeddings(), ref.user_embeddings())
    np.testing.assert_array_equal(u.item_embeddings(), ref.item_embeddings())


@pytest.mark.parametrize("model", MODELS.names())
def test_forget_users_equals_fresh_fit(model, split):
    u = fit("retrain", split, model=model, seed=1)
    req = ForgetRequest(users=[0, 10, 200, 941])
    rep = u.forget(req)
    assert rep.retrained == ["full"]
    assert params_equal(u.model_.params_,
                        fresh(model, split.train, split.valid, req, 1).params_)


@pytest.mark.parametrize("grain", ["interaction", "item"])
def test_forget_pairs_and_items_equals_fresh_fit(grain, split):
    u = fit("retrain", split, seed=2)
    req = (ForgetRequest(pairs=select_forget_interactions(split.train, 0.02, 0))
           if grain == "interaction" else
           ForgetRequest(items=select_forget_items(split.train, 0.02, 0, "popular")))
    u.forget(req)
    assert params_equal(u.model_.params_,
                        fresh("bpr", split.train, split.valid, req, 2).params_)


def test_two_requests_equal_one_fresh_fit_on_what_remains(split):
    u = fit("retrain", split, seed=0)
    u.forget(ForgetRequest(users=[1, 2, 3]))
    u.forget(ForgetRequest(items=[49]))
    both = ForgetRequest(users=[1, 2, 3], items=[49])
    assert params_equal(u.model_.params_,
                        fresh("bpr", split.train, split.valid, both, 0).params_)


def test_without_validation_data(split):
    u = Retrain("bpr", model_config("bpr")).fit(split.train, None, seed=0)
    assert u.valid_ is None
    rep = u.forget(ForgetRequest(users=[4]))
    assert rep.details["valid_rows_removed"] == 0 and u.valid_ is None
    ref = make_model("bpr", **model_config("bpr")).fit(
        split.train.without(ForgetRequest(users=[4])), None, seed=child_seed(0, "model"))
    assert params_equal(u.model_.params_, ref.params_)


def test_user_with_only_validation_rows_left_can_be_forgotten(split):
    """After its training rows go (pair requests), a user's validation rows are still
    data about it: forgetting the user removes them and is not an error."""
    u = fit("retrain", split)
    user = int(np.flatnonzero((split.train.user_counts() <= 30)
                              & (split.valid.user_counts() > 0))[0])
    rows = np.flatnonzero(split.train.users == user)
    pairs = np.stack([split.train.users[rows], split.train.items[rows]], axis=1)
    u.forget(ForgetRequest(pairs=pairs))
    assert not (u.train_.users == user).any() and (u.valid_.users == user).any()
    rep = u.forget(ForgetRequest(users=[user]))
    assert rep.rows_removed == 0 and rep.details["valid_rows_removed"] > 0
    assert not (u.valid_.users == user).any()


def test_exact_with_early_stopping_on_the_reduced_validation_data(split):
    """With evaluation every epoch, the validation rows steer which epoch is kept: the
    retrain must use the validation data without the forgotten users' rows."""
    cfg = {"epochs": 6, "dim": 8, "eval_every": 1, "patience": 1}
    u = fit("retrain", split, model_cfg=cfg, seed=0)
    req = ForgetRequest(users=np.arange(0, 943, 7))
    u.forget(req)
    ref = make_model("bpr", **cfg).fit(split.train.without(req),
                                       split.valid.select(~req.match_rows(split.valid)),
                                       seed=child_seed(0, "model"))
    assert params_equal(u.model_.params_, ref.params_)
    assert u.model_.fit_info_["history"] == ref.fit_info_["history"]
