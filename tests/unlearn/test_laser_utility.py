"""LASER on real MovieLens-100K with the default models: one model over all the data.

The paper's point is that sequential training over the groups ends in *one* model that
has seen every group, so its utility should be that of a normally trained model, unlike
SISA's isolated shards. Bounds (default BPR-MF and WMF, seed 0, test NDCG@20 over every
user; measured in brackets):

* LASER (cumulative schedule) is no worse than SISA (BPR .272 vs .210, WMF .300 vs .219)
  and within 10 % of retraining (BPR .272 vs .275, WMF .300 vs .307); 10 % is the bound
  the issue sets and leaves room for other seeds.
* Its learned model memorises its training rows like a normally trained one: the
  completeness suite's headline on the core 5 % users (before any forgetting) is at least
  0.75 (measured BPR .98, WMF .81; retraining's learned model .96–.99). A model that
  memorises nothing would read 0.5 and make every completeness figure meaningless.
* The paper's literal schedule (each stage on its own group for ⌈E/K⌉ epochs) is the
  documented failure: below 75 % of retraining's NDCG@20 (measured BPR .189, WMF .129).
"""

from __future__ import annotations

import pytest

from trustrec.data.selection import select_forget_users
from trustrec.evaluate.membership import membership_sets
from trustrec.evaluate.ranking import ndcg_at
from trustrec.evaluate.suite import completeness_suite
from trustrec.unlearn import ForgetRequest, make_unlearner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["bpr", "wmf"])
def fitted(request, ml100k_split):
    split = ml100k_split
    out = {name: make_unlearner(method, request.param, **cfg).fit(split.train, split.valid,
                                                                    seed=0)
           for name, method, cfg in (("retrain", "retrain", {}), ("sisa", "sisa", {}),
                                     ("laser", "laser", {}),
                                     ("paper", "laser", {"schedule": "paper"}))}
    return request.param, out


def test_laser_utility_matches_one_model_over_all_data(fitted, ml100k_split):
    model, u = fitted
    split = ml100k_split
    ndcg = {k: ndcg_at(v, split.train, split.test, 20) for k, v in u.items()}
    assert ndcg["laser"] >= ndcg["sisa"], (model, ndcg)
    assert ndcg["laser"] >= 0.9 * ndcg["retrain"], (model, ndcg)
    assert ndcg["paper"] < 0.75 * ndcg["retrain"], (model, ndcg)


def test_laser_learned_model_memorises(fitted, ml100k_split):
    model, u = fitted
    split = ml100k_split
    req = ForgetRequest(users=select_forget_users(split.train, "core", 0.05, seed=0))
    members, nonmembers = membership_sets(req, split.train, split.test)
    auc = completeness_suite(u["laser"], members, nonmembers, n_bootstrap=0)["mia_auc"]
    assert auc >= 0.75, (model, auc)
