"""Experiment kinds of ``trustrec bench``: one module each, registered by name.

* ``unlearning`` (:mod:`~trustrec.bench.experiments.unlearning`): learn, forget, and
  measure completeness, utility, efficiency and fairness (CURE4Rec's four aspects).
* ``privacy`` (:mod:`~trustrec.bench.experiments.privacy`): attack a released user table
  for sensitive attributes, protect it, and measure what protection costs.
* ``attack`` (:mod:`~trustrec.bench.experiments.attack`): pollute real users' sequences
  toward a target item, retrain the sequential victim, and measure exposure and stealth.
* ``fairness`` (:mod:`~trustrec.bench.experiments.fairness`): train with a user- or
  item-fairness method and measure utility, UGF and the long tail against plain training.
* ``federated`` (:mod:`~trustrec.bench.experiments.federated`): federated recommenders
  (FedMF, FedNCF, PFedRec, FedRecGEL) per round against their centralised ceiling.

Adding a kind: one module defining an :class:`~trustrec.bench.experiments.base.Experiment`
subclass registered in :data:`EXPERIMENTS`, imported here, and one test file.
"""

from __future__ import annotations

from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.config import suggest
from trustrec.errors import ConfigError


def _register() -> None:
    from trustrec.bench.experiments import (  # noqa: F401
        attack,
        fairclf,
        fairness,
        federated,
        fedunlearn,
        privacy,
        unlearning,
    )


def get_experiment(kind: str, where: str = "spec") -> Experiment:
    """A new instance of the experiment kind ``kind``.

    Raises:
        ConfigError: an unknown kind, naming the closest known one.
    """
    _register()
    if kind not in EXPERIMENTS:
        raise ConfigError(f"kind: unknown kind {kind!r} in {where}"
                          f"{suggest(str(kind), EXPERIMENTS.names())}")
    return EXPERIMENTS.get(kind)()


def kinds() -> list[str]:
    """Names of the registered experiment kinds."""
    _register()
    return EXPERIMENTS.names()


__all__ = ["EXPERIMENTS", "CellOutput", "Experiment", "Stage", "get_experiment", "kinds"]
