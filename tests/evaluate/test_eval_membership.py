"""Membership inference: AUC arithmetic, signals, member / non-member sets, real ML-100K."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from trustrec.data.request import ForgetRequest
from trustrec.data.selection import select_forget_interactions, select_forget_users
from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.membership import (
    mann_whitney_auc,
    membership_report,
    membership_sets,
    rank_percentiles,
    weighted_auc,
)
from trustrec.models import make_model

from .conftest import make_ds


# ---------------------------------------------------------------------------- AUC math
def test_auc_perfect_reversed_identical():
    assert mann_whitney_auc([0.9, 0.8, 0.7], [0.1, 0.2]) == 1.0
    assert mann_whitney_auc([0.1, 0.2], [0.9, 0.8, 0.7]) == 0.0
    assert mann_whitney_auc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5
    assert mann_whitney_auc([0.3, 0.7], [0.3, 0.7]) == 0.5
    assert np.isnan(mann_whitney_auc([], [0.3]))
    assert weighted_auc([0.9, 0.8], [0.1]) == 1.0
    assert weighted_auc([0.1], [0.9, 0.8]) == 0.0
    assert weighted_auc([0.4, 0.4], [0.4]) == 0.5


def test_auc_matches_scipy_and_brute_force_with_ties_and_weights():
    gen = np.random.default_rng(3)
    x = gen.integers(0, 6, 40).astype(float)  # many ties
    y = gen.integers(0, 5, 30).astype(float)
    u = mannwhitneyu(x, y).statistic
    assert mann_whitney_auc(x, y) == pytest.approx(u / (40 * 30))
    assert weighted_auc(x, y) == pytest.approx(u / (40 * 30))
    wx, wy = gen.random(40), gen.random(30)
    brute = sum(a * b * ((xi > yj) + 0.5 * (xi == yj))
                for (xi, a), (yj, b) in itertools.product(zip(x, wx, strict=True),
                                                       zip(y, wy, strict=True)))
    assert weighted_auc(x, y, wx, wy) == pytest.approx(brute / (wx.sum() * wy.sum()))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_auc(x, y, -wx, wy)


# ---------------------------------------------------------------------------- signal
def test_rank_percentile_top_bottom_ties_and_chunks():
    scores = np.array([[3.0, 1.0, 2.0, 2.0],
                       [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    f = lambda users: scores[users]  # noqa: E731
    users = np.array([0, 0, 0, 1, 0])
    items = np.array([0, 1, 2, 3, 3])
    pct = rank_percentiles(f, users, items, n_items=4)
    # top = 1, bottom = 0; the tie of two in the middle takes ranks 1 and 2 in a random order
    np.testing.assert_allclose(pct[:2], [1.0, 0.0])
    assert sorted(pct[[2, 4]].tolist()) == pytest.approx([1 / 3, 2 / 3])
    assert pct[3] in {0.0, 1 / 3, 2 / 3, 1.0}  # all-tied row: a random rank
    np.testing.assert_allclose(rank_percentiles(f, users, items, n_items=4, seed=3),
                               rank_percentiles(f, users, items, n_items=4, seed=3))
    with pytest.raises(ConfigError):
        rank_percentiles(f, users, items, n_items=4, chunk_size=0)
    with pytest.raises(ValueError, match="out of range"):
        rank_percentiles(f, users, np.array([0, 1, 2, 3, 4]), n_items=4)


def test_all_tied_rows_give_chance_with_noise_not_an_exact_half():
    # a user table reset to zero ties every score: the AUC must carry sampling noise
    members, nonmembers = _toy(n_users=60)
    r = membership_report(lambda u: np.zeros((len(u), 40)), members, nonmembers,
                          n_bootstrap=100)
    assert abs(r["mia_auc_user"] - 0.5) < 0.2
    assert r["mia_auc_user_se"] > 0.01 and r["mia_auc_interaction_se"] > 0.01
    seeds = {membership_report(lambda u: np.zeros((len(u), 40)), members, nonmembers,
                               seed=s, n_bootstrap=0)["mia_auc_user"] for s in range(5)}
    assert len(seeds) > 1


# ---------------------------------------------------------------------------- report
def _toy(n_users=30, n_items=40, per_user=8):
    """Every user has ``per_user`` member items (0..7 + offset) and non-member items."""
    gen = np.random.default_rng(0)
    mem, non = [], []
    for u in range(n_users):
        items = gen.permutation(n_items)[:2 * per_user]
        mem += [(u, i) for i in items[:per_user]]
        non += [(u, i) for i in items[per_user:per_user + per_user // 2]]
    return (make_ds(mem, n_users, n_items), make_ds(non, n_users, n_items))


def test_report_separating_and_blind_models():
    members, nonmembers = _toy()
    s_mem = members.to_csr().toarray()
    remembers = lambda users: s_mem[users] + 0.01 * np.arange(40)  # noqa: E731
    forgets_all = lambda users: -s_mem[users] - 0.01 * np.arange(40)  # noqa: E731
    blind = lambda users: np.zeros((len(users), 40))  # noqa: E731
    r = membership_report(remembers, members, nonmembers, n_bootstrap=50)
    assert r["mia_auc_user"] == 1.0 and r["mia_auc_interaction"] == 1.0
    assert r["mia_n_users"] == 30 and r["mia_n_members"] == 240
    assert r["mia_n_nonmembers"] == 120
    assert r["mia_auc_user_se"] == pytest.approx(0.0)
    r = membership_report(forgets_all, members, nonmembers, n_bootstrap=50)
    assert r["mia_auc_user"] == 0.0 and r["mia_auc_interaction"] == 0.0
    r = membership_report(blind, members, nonmembers, n_bootstrap=50)
    assert abs(r["mia_auc_user"] - 0.5) < 0.2 and abs(r["mia_auc_interaction"] - 0.5) < 0.1


def test_report_uses_only_users_with_both_sides_and_checks_input():
    members = make_ds([(0, 1), (0, 2), (1, 3)], 3, 5)
    nonmembers = make_ds([(0, 4), (2, 0)], 3, 5)
    r = membership_report(lambda u: np.tile(np.arange(5.0), (len(u), 1)), members,
                          nonmembers, n_bootstrap=0)
    assert r["mia_n_users"] == 1 and r["mia_n_members"] == 2 and r["mia_n_nonmembers"] == 1
    assert r["mia_auc_interaction"] == 0.0  # item 4 scores above items 1 and 2
    assert np.isnan(r["mia_auc_user_se"])  # no bootstrap asked
    with pytest.raises(DataFormatError, match="id space"):
        membership_report(lambda u: np.zeros((len(u), 5)), members,
                          make_ds([(0, 4)], 3, 6))
    with pytest.raises(ConfigError, match="n_bootstrap"):
        membership_report(lambda u: np.zeros((len(u), 5)), members, nonmembers,
                          n_bootstrap=-1)


def pairs(ds) -> list[tuple[int, int]]:
    return sorted(zip(ds.users.tolist(), ds.items.tolist(), strict=True))


def test_membership_sets_per_grain():
    train = make_ds([(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)], 3, 5)
    test = make_ds([(0, 4), (1, 3), (2, 1), (2, 3)], 3, 5)  # (2, 3) duplicates training
    m, n = membership_sets(ForgetRequest(users=[0, 2]), train, test)
    assert pairs(m) == [(0, 0), (0, 1), (2, 3)]
    assert pairs(n) == [(0, 4), (2, 1)]  # (2, 3) dropped
    m, n = membership_sets(ForgetRequest(pairs=[[1, 2]]), train, test)
    assert pairs(m) == [(1, 2)]
    assert pairs(n) == [(1, 3)]  # the user's held-out rows
    m, n = membership_sets(ForgetRequest(items=[1]), train, test)
    assert pairs(m) == [(0, 1), (1, 1)]
    assert pairs(n) == [(2, 1)]  # the item's held-out rows


# ---------------------------------------------------------------------------- real data
#: A lightly regularised BPR-MF trained for a fixed 60 epochs (no early stopping) memorises
#: its training rows more than the default config (reg 0.015, early stopping), which
#: generalises so well that its AUC on these 47 random users is only about 0.53-0.58: the
#: attack's power depends on memorisation, and this test is about telling a remembering
#: model from a retrained one.
MIA_BPR = {"dim": 64, "reg": 0.002, "epochs": 60, "lr_decay": 0.99}


@pytest.fixture(scope="module")
def mia_setup(ml100k_split):
    train, test = ml100k_split.train, ml100k_split.test
    request = ForgetRequest(users=select_forget_users(train, "random", 0.05, seed=0))
    members, nonmembers = membership_sets(request, train, test)
    original = make_model("bpr", **MIA_BPR).fit(train, None, seed=0)
    retrained = make_model("bpr", **MIA_BPR).fit(train.without(request), None, seed=0)
    return members, nonmembers, original, retrained


def test_original_model_is_caught_retrained_model_is_not(mia_setup):
    members, nonmembers, original, retrained = mia_setup
    before = membership_report(original, members, nonmembers, seed=0)
    after = membership_report(retrained, members, nonmembers, seed=0)
    assert before["mia_n_users"] == after["mia_n_users"] == 47
    assert before["mia_n_members"] > 5 * before["mia_n_nonmembers"] > 0
    for level in ("user", "interaction"):
        auc, se = before[f"mia_auc_{level}"], before[f"mia_auc_{level}_se"]
        re_auc, re_se = after[f"mia_auc_{level}"], after[f"mia_auc_{level}_se"]
        assert 0 < se < 0.06 and 0 < re_se < 0.06
        # The original model trained on the members: clearly above chance, by more than
        # three standard errors and by at least 0.15 (measured: user 0.76 +- 0.04,
        # interaction 0.71 +- 0.02).
        assert auc > 0.65 and auc - 3 * se > 0.5, (level, auc, se)
        # The retrained model saw neither side: within three standard errors of 0.5
        # (measured: user 0.455 +- 0.04, interaction 0.488 +- 0.02).
        assert abs(re_auc - 0.5) < 3 * re_se, (level, re_auc, re_se)
        assert auc - re_auc > 0.1


def test_null_model_is_at_chance_for_interaction_requests(ml100k_split):
    """A popularity model fitted on the remaining data sees neither side of an interaction
    request: both AUCs are within 3 SE of 0.5. (Without the per-user weights and
    equal-size profiles the user-level AUC sat at 0.53 on retrained BPR here.)"""
    train, test = ml100k_split.train, ml100k_split.test
    request = ForgetRequest(pairs=select_forget_interactions(train, 0.05, seed=0))
    members, nonmembers = membership_sets(request, train, test)
    pop = np.bincount(train.without(request).items, minlength=train.n_items)
    r = membership_report(lambda u: np.tile(pop.astype(np.float32), (len(u), 1)), members,
                          nonmembers, seed=0)
    assert r["mia_n_users"] > 700
    for level in ("user", "interaction"):
        assert abs(r[f"mia_auc_{level}"] - 0.5) < 3 * r[f"mia_auc_{level}_se"], (level, r)
