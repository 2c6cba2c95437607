"""What a federated unlearning method is judged by.

- ``forget_accuracy``: class request — accuracy on the test images of the forgotten class
  (retraining gives ~0); backdoor request — ``attack_success``, the share of triggered
  test images (true label not the target) sent to the target.
- ``retain_accuracy``: accuracy on the other test images (backdoor: every clean test
  image).
- ``mia_auc``: a loss-based membership-inference attack on the forget set — the AUC of
  the model's probability of the row's training label, forget rows (members) against
  unseen rows of the same kind (test images of the class; triggered test images labelled
  the target). 0.5 is chance; retraining sits near it.
- ``relearn``: a relearning attack — the attacker holds ``relearn_rows`` forget rows and
  takes ``relearn_steps`` full-batch SGD steps on them (mixed with as many retained rows),
  then the forget measure is read again. Knowledge only hidden (the ``mask`` control)
  comes straight back; knowledge removed must be learned anew from a handful of rows.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from trustrec.federated.classify import Params, forward, one_hot, predict_proba
from trustrec.fedunlearn.federation import N_CLASSES, UnlearnFederation, add_trigger
from trustrec.seeding import rng


def _triggered_test(fed: UnlearnFederation) -> np.ndarray:
    return add_trigger(fed.x_test[fed.y_test != fed.target])


def forget_measure(fed: UnlearnFederation, params: Params) -> float:
    """Forget-class test accuracy, or the backdoor's attack success."""
    if fed.request == "class":
        rows = fed.y_test == fed.target
        return float((predict_proba(params, fed.x_test[rows]).argmax(1) == fed.target).mean())
    return float((predict_proba(params, _triggered_test(fed)).argmax(1) == fed.target).mean())


def retain_accuracy(fed: UnlearnFederation, params: Params) -> float:
    """Accuracy on the test images outside the forget set's kind."""
    rows = fed.y_test != fed.target if fed.request == "class" else np.ones(len(fed.y_test), bool)
    return float((predict_proba(params, fed.x_test[rows]).argmax(1) == fed.y_test[rows]).mean())


def mia_auc(fed: UnlearnFederation, params: Params) -> float:
    """The loss-based membership AUC on the forget set (module docstring)."""
    members = fed.all_forgotten()[0].numpy()
    if fed.request == "class":
        outsiders = fed.x_test[fed.y_test == fed.target]
    else:
        outsiders = _triggered_test(fed)
    p_in = predict_proba(params, members)[:, fed.target]
    p_out = predict_proba(params, outsiders)[:, fed.target]
    labels = np.r_[np.ones(len(p_in)), np.zeros(len(p_out))]
    return float(roc_auc_score(labels, np.r_[p_in, p_out]))


def relearn(fed: UnlearnFederation, params: Params, seed: int, rows: int = 10,
            steps: int = 3, lr: float = 0.1) -> float:
    """The forget measure after the relearning attack (module docstring)."""
    xf, yf = fed.all_forgotten()
    xr = torch.cat([fed.retained(k)[0] for k in range(fed.n_clients)])
    yr = np.concatenate([fed.retained(k)[1] for k in range(fed.n_clients)])
    gen = rng(seed, "fedunlearn", "relearn")
    fi = torch.from_numpy(gen.choice(len(yf), size=min(rows, len(yf)), replace=False))
    ri = torch.from_numpy(gen.choice(len(yr), size=min(rows, len(yr)), replace=False))
    x = torch.cat([xf[fi], xr[ri]])
    t = one_hot(np.r_[yf[fi.numpy()], yr[ri.numpy()]], N_CLASSES)
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.SGD(list(p.values()), lr=lr)
    for _ in range(steps):
        loss = -(t * torch.log_softmax(forward(p, x), 1)).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return forget_measure(fed, {k: v.detach() for k, v in p.items()})


def audit(fed: UnlearnFederation, params: Params, seed: int) -> dict[str, float]:
    """Every measure of the module docstring."""
    return {"forget": forget_measure(fed, params), "retain": retain_accuracy(fed, params),
            "mia_auc": mia_auc(fed, params), "relearn": relearn(fed, params, seed)}
