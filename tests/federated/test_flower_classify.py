"""Federated classification on Flower gives the in-process model for the same seed: a
protocol with uploads, a broadcast and client state (FedFACT in-processing with local
budgets) and one with sketches (WassFFed), on a small federation of a real table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.tabular import load_tabular
from trustrec.fairclf.federation import make_federation
from trustrec.fairclf.inprocess import FairInConfig, FairInRounds
from trustrec.fairclf.wassffed import WassFFedConfig, WassFFedRounds
from trustrec.federated.classify import ClassifierConfig, fit_federated_classifier
from trustrec.federated.flower_classify import run_flower_classifier

#: Summation order is the same (clients aggregated in order) but the local training runs
#: in other processes: parameters agree to float32 rounding.
ATOL = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("which", ["fedfact-in", "wassffed"])
def test_flower_and_in_process_give_the_same_classifier(which):
    pytest.importorskip("flwr")
    data = load_tabular("adult", progress=False)
    rows = np.random.default_rng(0).choice(len(data), 3000, replace=False)
    small = type(data)(**{**data.__dict__, "x": data.x[rows], "y": data.y[rows],
                          "group": data.group[rows]})
    fed = make_federation(small, 3, 1.0, seed=5)
    cfg = ClassifierConfig(rounds=3, lr=0.05, participation=0.67)

    def rounds():
        if which == "fedfact-in":
            return FairInRounds(fed, FairInConfig(xi=0.01, xi_local=0.02))
        return WassFFedRounds(fed, WassFFedConfig(warmup=1))

    local = fit_federated_classifier(rounds(), 2, cfg, seed=5)
    flower = run_flower_classifier(rounds(), 2, cfg, seed=5)
    moved = fit_federated_classifier(rounds(), 2, cfg, seed=5, rounds=0)
    for name, t in local.items():
        torch.testing.assert_close(flower[name], t, atol=ATOL, rtol=1e-4)
        assert not torch.allclose(moved[name], t)  # training moved them
