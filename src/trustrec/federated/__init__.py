"""Federated recommendation (and classification): one core, two runtimes.

- The core: clients' data and padded work batches (:mod:`.clients`), keyed random draws
  (:mod:`.keyed`), the architectures and what each shares (:mod:`.arch`), local training
  for a batch of clients (:mod:`.local`), the server's sampling, aggregation and optimiser
  (:mod:`.server`, :mod:`.aggregate`).
- Runtimes: the in-process simulator (:func:`.fit.fit_federation`: rounds, validation,
  the chosen round, checkpoints) and Flower (:func:`.flower.run_flower`, optional extra
  ``trustrec[flower]``); for the same seed they give the same model.
- Methods (:data:`.methods.FEDERATED`): ``fedmf``, ``fedncf``, ``pfedrec``, ``fedrecgel``.
- ``trustrec fed run --spec FILE`` (:mod:`.run`) and the ``federated`` bench kind.
- Classification on the same server pieces (:mod:`.classify`: round protocols, FedAvg in
  process; :mod:`.flower_classify`: the same protocols on Flower), used by
  :mod:`trustrec.fairclf` and :mod:`trustrec.fedunlearn`.
"""

from __future__ import annotations

from trustrec.federated.fit import FitResult, fit_federation
from trustrec.federated.methods import FEDERATED, FedMethod, make_federated
from trustrec.federated.model import FederatedRecommender

__all__ = ["FEDERATED", "FedMethod", "FederatedRecommender", "FitResult", "fit_federation",
           "make_federated"]
