"""How the defaults of fair in-processing and FedAF were chosen, on development seeds only
(the bench specs and the effect tests report other seeds).

- Fair in-processing's dual step η (``FairInConfig.dual_lr``): Adult, DP, ξ = 0.02 and
  0.05, centralised and five clients, split seeds 0-1; measured on each client's
  hold-out rows (the test rows are never read).
- FedAF's unlearning rounds and who takes part (``FedUnlearnConfig.unlearn_rounds``,
  ``forgetters_only``): digits, class 3 and backdoors to 1, 3, 5 and 8, split seed 0
  (the bench reports seeds 1-3).

Writes ``benchmarks/tune_fedclf_result.json`` and prints one line per setting.

    python benchmarks/tune_fedclf.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trustrec.data.tabular import load_tabular
from trustrec.fairclf.federation import fairness_measures, make_federation
from trustrec.fairclf.inprocess import FairInConfig, fit_fair_inprocess
from trustrec.federated.classify import ClassifierConfig, predict_proba
from trustrec.fedunlearn.audit import audit
from trustrec.fedunlearn.federation import make_digits_federation
from trustrec.fedunlearn.methods import FedUnlearnConfig, train_original, unlearn


def tune_dual_lr() -> list[dict]:
    data = load_tabular("adult", progress=False)
    clf = ClassifierConfig(rounds=20, lr=0.05)
    rows = []
    for seed in (0, 1):
        for clients in (1, 5):
            fed = make_federation(data, clients, 0.5, seed)
            for eta in (0.25, 0.5, 1.0, 2.0):
                for xi in (0.02, 0.05):
                    params, _ = fit_fair_inprocess(fed, FairInConfig(xi=xi, dual_lr=eta), clf,
                                                   seed)
                    m = fairness_measures(fed, "dp", [predict_proba(params, x).argmax(1)
                                                      for x in fed.x("hold")], part="hold")
                    rows.append({"seed": seed, "clients": clients, "dual_lr": eta, "xi": xi,
                                 "accuracy": m["accuracy"],
                                 "disparity": m["global_disparity"]})
                    print(rows[-1], flush=True)
    return rows


def tune_fedaf() -> list[dict]:
    clf = ClassifierConfig(hidden=64, rounds=30, lr=0.1, local_epochs=2, batch_size=32)
    rows = []
    for request, target in (("class", 3), ("backdoor", 1), ("backdoor", 3), ("backdoor", 5),
                            ("backdoor", 8)):
        fed = make_digits_federation(request, target, seed=0)
        original = train_original(fed, clf, 0)
        for only in (False, True):
            for rounds in (1, 3, 5, 8):
                cfg = FedUnlearnConfig(unlearn_rounds=rounds, forgetters_only=only)
                got = audit(fed, unlearn("fedaf", fed, original, cfg, clf, 0).params, 0)
                rows.append({"request": request, "target": target, "forgetters_only": only,
                             "unlearn_rounds": rounds, **got})
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    result = {"dual_lr": tune_dual_lr(), "fedaf": tune_fedaf()}
    summary = {}
    for eta in (0.25, 0.5, 1.0, 2.0):
        over = [max(0.0, r["disparity"] - r["xi"]) for r in result["dual_lr"]
                if r["dual_lr"] == eta]
        summary[f"dual_lr={eta}: mean excess over xi"] = float(np.mean(over))
    result["summary"] = summary
    print(json.dumps(summary, indent=1))
    out = Path(__file__).with_name("tune_fedclf_result.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
