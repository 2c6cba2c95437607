"""Adversarial training by gradient reversal: checks, and its effect on real ML-100K."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.ranking import ndcg_at
from trustrec.models.base import load_model
from trustrec.privacy import DEFENSES, audit_embeddings, make_defense, user_table
from trustrec.privacy.attack import leakage

from .conftest import PRIVACY_MODEL

TINY = {"dim": 8, "epochs": 3}


@pytest.mark.parametrize("option", [{"lam": 0.0}, {"hidden": 0}, {"adv_steps": 0},
                                    {"user_steps": 0}, {"radius": -1.0}, {"adv_lr": 0.0},
                                    {"warmup_epochs": 0}, {"defense_epochs": 0},
                                    {"lambda": 1.0}])
def test_bad_config_is_a_config_error(option):
    with pytest.raises(ConfigError):
        make_defense("adversarial", **option)


def test_bad_labels_fail_before_training(ml100k_split):
    adv = make_defense("adversarial")
    with pytest.raises(DataFormatError, match="integers"):
        adv.fit("bpr", TINY, ml100k_split.train, ml100k_split.valid,
                {"gender": np.zeros(ml100k_split.train.n_users)})


@pytest.mark.slow
def test_registered_reproducible_savable_and_bounded(ml100k_split, ml100k_labels, tmp_path):
    assert "adversarial" in DEFENSES
    adv = make_defense("adversarial", defense_epochs=2, radius=0.01)
    labels = {"gender": ml100k_labels["gender"], "occupation": ml100k_labels["occupation"]}
    a = adv.fit("bpr", TINY, ml100k_split.train, ml100k_split.valid, labels, seed=5)
    b = adv.fit("bpr", TINY, ml100k_split.train, ml100k_split.valid, labels, seed=5)
    assert all(torch.equal(a.params_[k], b.params_[k]) for k in a.params_)
    record = a.fit_info_["defense"]
    assert record["defense"] == "adversarial"
    assert record["attributes"] == ["gender", "occupation"]
    assert [s["epoch"] for s in record["steps"]] == [1, 2]
    # The reversed step raises the adversary's loss, and never moves a user by more than
    # the ball (radius 0.01 of the RMS row norm; the mean move is at most that).
    for s in record["steps"]:
        assert s["reversed_loss"] > s["adv_loss"]
        assert 0 < s["move"] <= 0.01 * (1 + 1e-5)
    a.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.fit_info_["defense"]["config"]["radius"] == 0.01
    np.testing.assert_array_equal(back.score(np.arange(10)), a.score(np.arange(10)))


@pytest.fixture(scope="module")
def adversarial_bpr(ml100k_split, ml100k_labels, seen_half):
    return make_defense("adversarial").fit(
        "bpr", PRIVACY_MODEL, ml100k_split.train, ml100k_split.valid,
        {"gender": ml100k_labels["gender"]}, seed=0, label_users=seen_half)


@pytest.mark.slow
def test_adversarial_training_hides_gender_of_the_seen_users(
        adversarial_bpr, bpr_seen_gender_leakage, bpr_ml100k_test_ndcg, ml100k_split,
        ml100k_labels, seen_half):
    # The grid's threat model (the defense sees half of the labels; λ was tuned for it on
    # seeds 100-102). Measured (default BPR-MF, seed 0) on the 472 seen users: undefended
    # leakage max|BA - 0.5| = 0.178; with adversarial training (10 rounds of 10
    # adversary + 1 reversal step per epoch, λ 0.05, 10 epochs) lr 0.497 / mlp 0.427 /
    # gbt 0.479, leakage 0.073 (every label seen instead: 0.068). With ±0.045 noise per
    # 5-fold estimate on 472 users: leakage <= 0.10 and a drop of at least 0.07. Test
    # NDCG@20 0.284 → 0.277; bound 0.015 (≈ 5 %).
    y = ml100k_labels["gender"]
    audit = audit_embeddings(user_table(adversarial_bpr), np.where(seen_half, y, -1), seed=0)
    after = leakage(audit)
    assert after <= 0.10, audit
    assert after <= bpr_seen_gender_leakage - 0.07, (bpr_seen_gender_leakage, after)
    ndcg = ndcg_at(adversarial_bpr, ml100k_split.train, ml100k_split.test, 20)
    assert ndcg >= bpr_ml100k_test_ndcg - 0.015, (ndcg, bpr_ml100k_test_ndcg)
