"""Item-side metrics (head/tail, exposure) and the per-user F1 of UGF."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluate.conftest import make_ds
from trustrec.errors import ConfigError
from trustrec.evaluate.fairness import a_igf_signed
from trustrec.evaluate.longtail import (
    exposure_metrics,
    gini,
    head_items,
    head_tail_metrics,
    item_table,
    longtail_report,
)
from trustrec.evaluate.ranking import evaluate_ranking, recommend_lists


def fixed_scores(table: np.ndarray):
    """A score function returning rows of ``table``."""
    return lambda users: table[np.asarray(users)]


def test_head_items_share_ties_and_errors():
    # item counts: 0→3, 1→1, 2→3, 3→0, 4→2
    ds = make_ds([(0, 0), (1, 0), (2, 0), (0, 1), (0, 2), (1, 2), (2, 2), (0, 4), (1, 4)], 3, 5)
    assert np.flatnonzero(head_items(ds, 0.4)).tolist() == [0, 2]  # round(2.0)
    assert np.flatnonzero(head_items(ds, 0.2)).tolist() == [0]  # tie 0/2: lower index
    assert np.flatnonzero(head_items(ds, 0.01)).tolist() == [0]  # at least one
    # 0.8 of 5 items = 4, but item 3 never occurs in training: never head
    assert np.flatnonzero(head_items(ds, 0.8)).tolist() == [0, 1, 2, 4]
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ConfigError, match="head share"):
            head_items(ds, bad)


def test_gini_extremes():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.zeros(4)) == 0.0
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)  # (n-1)/n for one holder


def test_exposure_metrics_by_hand():
    train = make_ds([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 2)], 3, 4)  # counts 3,2,1,0
    head = np.array([True, False, False, False])
    lists = np.array([[0, 1], [0, 2], [3, -1]])  # user 2 has one rankable item
    m = exposure_metrics(lists, train, head)
    assert m["coverage@2"] == pytest.approx(1.0)
    rec = item_table(lists, train, head)["recommended"].tolist()
    assert rec == [2, 1, 1, 1]
    assert m["gini@2"] == pytest.approx(gini(np.array(rec)))
    assert m["aplt@2"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))
    assert m["arp@2"] == pytest.approx(np.mean([(3 + 2) / 2, (3 + 1) / 2, 0.0]))


def test_recommend_lists_mask_training_items_and_pad():
    train = make_ds([(0, 0), (0, 1), (1, 2)], 2, 3)
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    lists = recommend_lists(fixed_scores(scores), train, np.array([0, 1]), 3)
    assert lists.tolist() == [[2, -1, -1], [1, 0, -1]]
    with pytest.raises(ValueError, match="out of range"):
        recommend_lists(fixed_scores(scores), train, np.array([5]), 2)


def test_head_tail_metrics_split_the_relevant_items():
    train = make_ds([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)], 3, 5)  # head (share .4): 0, 1
    head = head_items(train, 0.4)
    truth = make_ds([(0, 2), (1, 3), (2, 1), (2, 4)], 3, 5)
    scores = np.tile(np.array([[0.0, 5.0, 4.0, 3.0, 1.0]], dtype=np.float32), (3, 1))
    t = head_tail_metrics(fixed_scores(scores), train, truth, head, ks=(2,)).set_index("user")
    # user 2 (train: item 0): ranking 1, 2, 3, 4 -> head item 1 at rank 1, tail item 4 at 4
    assert t.loc[2, "recall@2_head"] == 1.0 and t.loc[2, "recall@2_tail"] == 0.0
    # user 0 has no head item held out: NaN there, its tail item 2 at rank 1
    assert np.isnan(t.loc[0, "ndcg@2_head"]) and t.loc[0, "ndcg@2_tail"] == 1.0
    per_user, items, summary = longtail_report(fixed_scores(scores), train, truth, k=2,
                                               share=0.4)
    assert summary["head_share"] == 0.4 and set(items.columns) >= {"recommended", "head"}
    assert summary["recall@2_head"] == pytest.approx(1.0)


def test_head_tail_from_one_scoring_equals_evaluate_ranking_per_group():
    gen = np.random.default_rng(0)
    pairs = {(int(u), int(i)) for u, i in zip(gen.integers(0, 30, 400),
                                             gen.integers(0, 40, 400), strict=True)}
    rows = sorted(pairs)
    train = make_ds(rows[::2], 30, 40)
    truth = make_ds(rows[1::2], 30, 40)
    scores = gen.random((30, 40)).astype(np.float32)
    scores[:, :5] = 0.5  # ties, broken by the lower index in both
    head = head_items(train, 0.3)
    t = head_tail_metrics(fixed_scores(scores), train, truth, head, ks=(3, 10))
    t = t.set_index("user")
    for group, keep in (("head", head), ("tail", ~head)):
        ref = evaluate_ranking(fixed_scores(scores), train,
                               truth.select(keep[truth.items]), ks=(3, 10)).set_index("user")
        for col in ("ndcg@3", "recall@3", "ndcg@10", "recall@10"):
            got = t[f"{col}_{group}"].dropna()
            assert got.index.equals(ref.index)
            np.testing.assert_allclose(got.to_numpy(), ref[col].to_numpy(), atol=1e-12)


def test_f1_is_li_et_al_per_user_form_and_ugf_uses_it():
    train = make_ds([(0, 0)] + [(1, i) for i in range(1, 4)], 2, 10)
    truth = make_ds([(0, 5), (0, 6), (1, 7)], 2, 10)
    scores = np.tile(-np.arange(10, dtype=np.float32), (2, 1))  # ranks by index
    t = evaluate_ranking(fixed_scores(scores), train, truth, ks=(3,)).set_index("user")
    # user 0: top-3 = 1, 2, 3 (no hit); user 1: 0, 4, 5 (no hit) -> both 0
    assert t["f1@3"].tolist() == [0.0, 0.0]
    scores[:, 5] = 100  # item 5 first for both
    t = evaluate_ranking(fixed_scores(scores), train, truth, ks=(3,)).set_index("user")
    assert t.loc[0, "f1@3"] == pytest.approx(2 * 1 / (2 + 3))
    assert t.loc[1, "f1@3"] == 0.0
    # user 1 (3 rows) is the advantaged one (top share 0.5 -> 1 user)
    assert a_igf_signed(t.reset_index(), train, "f1@3", top=0.5) == pytest.approx(-0.4)
