"""Effects on real data (MovieLens-100K): FedRecGEL against FedNCF, and the ceiling.

Protocol: per-user random 80/10/10 split, one client per user, 10 % of clients per round,
the smaller NeuMF (GMF 16, MLP 32, tower (32, 16)), server Adam at 0.01, 300 rounds with
validation every 20, the best validation round scored on test by full ranking. The server
rate, the rounds and FedRecGEL's radii were chosen by ``benchmarks/tune_federated.py`` on
seeds 100-101 (validation item); this test uses seeds 0-2 and the test split.
"""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.split import random_split
from trustrec.federated.fit import fit_federation
from trustrec.federated.methods import make_federated
from trustrec.federated.run import score_test_split
from trustrec.models import make_model

PROTOCOL = {"gmf_dim": 16, "mlp_dim": 32, "layers": (32, 16), "rounds": 300,
            "eval_every": 20, "server_lr": 0.01}
RADII = {"rho_shared": 0.2, "rho_private": 0.02}
SEEDS = (0, 1, 2)


@pytest.mark.slow
def test_fedrecgel_beats_fedncf_below_the_centralised_ceiling(ml100k) -> None:
    """The paper's claim, FedRecGEL's NDCG@10 above FedNCF's from the same seeds and
    configuration, as a mean over three seeds and on at least two of them.

    Threshold: only the sign of the gap, with the per-seed majority guarding against one
    lucky seed. On the tuning seeds (validation) the chosen radii gained +0.0082 and
    +0.0029 at NDCG@10 ≈ 0.21; the released radii (0.02 / 0.02) lost 0.004 and 0.003, so
    the sign is what the radii decide and what the claim is. Measured here (test, seeds
    0-2, ``benchmarks/specs/federated-ml100k.toml``): FedNCF 0.2018 / 0.1987 / 0.2063,
    FedRecGEL 0.2168 / 0.2006 / 0.2206 (seeds 3-5 of the bench: gaps +0.011, +0.007,
    +0.008). A seed's figure moves by up to 0.013 under float-rounding changes alone (the
    batch size, which changes the chosen round), so a single seed's gap is not the test.
    Both federations must also stay below the centralised NeuMF of the same architecture
    on the same split (0.2359 / 0.2259 / 0.2235): the ceiling, since a federation sees the
    same data through sparser, noisier updates.
    """
    gaps, fed, central = [], [], []
    for seed in SEEDS:
        split = random_split(ml100k, (0.8, 0.1, 0.1), seed=seed)
        scores = {}
        for name, extra in (("fedncf", {}), ("fedrecgel", RADII)):
            fit = fit_federation(make_federated(name, {**PROTOCOL, **extra}), split.train,
                                 split.valid, seed=seed)
            scores[name] = score_test_split(fit.model, split.train, split.test, 10, None,
                                        seed)["ndcg@10"]
        gaps.append(scores["fedrecgel"] - scores["fedncf"])
        fed.append(max(scores.values()))
        ceiling = make_model("neumf", gmf_dim=16, mlp_dim=32, layers=(32, 16))
        ceiling.fit(split.train, split.valid, seed=seed)
        central.append(score_test_split(ceiling, split.train, split.test, 10, None,
                                    seed)["ndcg@10"])
    gaps = np.array(gaps)
    assert gaps.mean() > 0 and (gaps > 0).sum() >= 2, gaps
    assert all(f < c for f, c in zip(fed, central, strict=True)), (fed, central)
