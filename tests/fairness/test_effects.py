"""Effects of the fairness methods on real data (MovieLens-100K, leave-last-out, the test
item of each user), with their thresholds and why.

The knobs were chosen out of sample (``benchmarks/tune_fairness.py``: training seeds
100-104, validation item; ``benchmarks/tune_longtail.py``: seeds 1-2, validation item);
these tests train with seed 0 (and 1, 2 for the user side) and score the test item.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.split import leave_last_out
from trustrec.evaluate.fairness import a_igf_signed
from trustrec.evaluate.longtail import longtail_report
from trustrec.evaluate.ranking import evaluate_ranking
from trustrec.fairness import make_fairness
from trustrec.models import make_model

#: The long-tail test's SASRec: 20 epochs over the last 30 items (~25 s a fit here).
SASREC = {"max_len": 30, "epochs": 20, "eval_every": 5}


@pytest.fixture(scope="module")
def loo(ml100k):
    return leave_last_out(ml100k)


@pytest.mark.slow
def test_reweighting_baselines_lift_the_tail_and_eisam_guards_it_better_than_sam(loo):
    """Seed 0, test item (plain / SAM / EISAM / IPS / logit adjustment measured here:
    tail NDCG@10 0.0128 / 0.0116 / 0.0124 / 0.0441 / 0.0443; NDCG@10 0.0817 / 0.0787 /
    0.0808 / 0.0258 / 0.0468).

    * IPS and logit adjustment trade head accuracy for the tail: each at least doubles
      tail NDCG@10 and raises catalogue coverage (both effects are 3x or more here).
    * EISAM keeps SAM's sharpness term off the head items: its tail NDCG@10 is at least
      SAM's and its overall NDCG@10 within 3 % of plain training (SAM loses 3.7 %). It
      does **not** raise tail NDCG over plain training here (0.0124 vs 0.0128, and 0.0167
      vs 0.0176 on the tuning seeds): the paper's claim is not reproduced on this data.
    """
    torch.set_num_threads(1)
    known = loo.known()
    out = {}
    for name in ("none", "sam", "eisam", "ips", "logit-adjust"):
        model = make_fairness(name).fit(make_model("sasrec", **SASREC), loo.train,
                                        loo.valid, seed=0)
        ndcg = float(evaluate_ranking(model, known, loo.test, ks=(10,),
                                      history=known)["ndcg@10"].mean())
        summary = longtail_report(model, known, loo.test, 10, history=known,
                                  popularity=loo.train)[2]
        out[name] = (ndcg, summary["ndcg@10_tail"], summary["coverage@10"])
    plain = out["none"]
    for name in ("ips", "logit-adjust"):
        assert out[name][1] >= 2 * plain[1], (name, out)
        assert out[name][2] > plain[2], (name, out)
    assert out["eisam"][1] >= out["sam"][1], out
    assert out["eisam"][0] >= 0.97 * plain[0], out


@pytest.mark.slow
def test_in_ucds_narrows_the_user_gap_at_no_utility_cost(loo):
    """NeuMF (In-UCDS's backbone), training seeds 0-2, test item; means over the seeds.

    Measured here (plain / In-UCDS / In-Naive): |UGF| of NDCG@10 0.031 / 0.013 / 0.032,
    NDCG@10 0.0656 / 0.0686 / 0.0633. The thresholds: In-UCDS at most 60 % of plain
    training's |UGF| (a clear margin: 0.41x measured), NDCG@10 at least 95 % of plain's
    (the bound the tuning admitted), and a lower |UGF| than In-Naive at no lower NDCG.

    Honest caveat, also in the README: one seed's group gap has a standard error of about
    0.02 (47 advantaged users, one test item each), and on the tuning seeds (100-104,
    validation item) In-Naive had the lower |UGF| (0.004 vs In-UCDS 0.014; plain 0.017):
    over those eight seeds the two pulls are not distinguishable, while both narrow the
    gap of plain training.
    """
    known = loo.known()
    gaps: dict[str, list[float]] = {}
    ndcg: dict[str, list[float]] = {}
    for seed in (0, 1, 2):
        for name in ("none", "in-ucds", "in-naive"):
            model = make_fairness(name).fit(make_model("neumf"), loo.train, loo.valid,
                                            seed=seed)
            table = evaluate_ranking(model, known, loo.test, ks=(10,))
            gaps.setdefault(name, []).append(abs(a_igf_signed(table, loo.train,
                                                              "ndcg@10")))
            ndcg.setdefault(name, []).append(float(table["ndcg@10"].mean()))
    gap = {k: float(np.mean(v)) for k, v in gaps.items()}
    utility = {k: float(np.mean(v)) for k, v in ndcg.items()}
    assert gap["in-ucds"] <= 0.6 * gap["none"], (gap, utility)
    assert utility["in-ucds"] >= 0.95 * utility["none"], (gap, utility)
    assert gap["in-ucds"] < gap["in-naive"], (gap, utility)
    assert utility["in-ucds"] >= utility["in-naive"], (gap, utility)
