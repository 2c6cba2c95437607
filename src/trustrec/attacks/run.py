"""One attack end to end: clean victim → pollution → (defense) → retrained victim → metrics.

:func:`attack_victim` is what the ``attack`` bench kind runs (``trustrec attack`` runs the
same steps on a model directory, :mod:`trustrec.workflows.attack`, and :func:`measure`). The
clean victim is trained on the clean training data (or given); the attack pollutes the
training data against it (white-box); a defense may act; the victim is retrained from
scratch, same config and seed, on the result; and every metric of
:mod:`trustrec.attacks.metrics` and :mod:`trustrec.attacks.detect` is taken, the clean
victim's as ``clean_...`` beside the attacked one's.

Defenses (:class:`DefenseConfig`):

* ``none``.
* ``filter``: run a detector on the polluted training data and drop the training rows of
  the ``share`` most suspicious users before retraining (what a platform would do with a
  shilling detector; clean users it flags lose their data too).
* ``adversarial``: retrain with adversarial training on the input embeddings
  (``adv_eps``, :class:`~trustrec.models.sequential.SequentialConfig`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from trustrec.attacks.base import Attack, Budget, Pollution, check_victim, windows_of
from trustrec.attacks.detect import DETECTORS, detect, detection, flagged, sequence_distance
from trustrec.attacks.metrics import audience, clean_ndcg, shift, target_exposure
from trustrec.config import PositiveFloat, UnitInterval, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.split import Split
from trustrec.models.base import make_model
from trustrec.models.sequential import SequentialRecommender


@typed_config
class DefenseConfig:
    """What the platform does against pollution.

    Attributes:
        kind: ``"none"``, ``"filter"`` or ``"adversarial"``.
        detector: the detector a ``filter`` uses (``pca`` or ``degsim``).
        share: share of users a ``filter`` drops.
        eps: ``adv_eps`` of ``adversarial`` training.
    """

    kind: Literal["none", "filter", "adversarial"] = "none"
    detector: Literal["pca", "degsim"] = "pca"
    share: UnitInterval = 0.05
    eps: PositiveFloat = 0.5


@dataclass(frozen=True, eq=False)
class AttackResult:
    """An attack's outcome: flat metrics, the pollution and both victims."""

    metrics: dict[str, float]
    pollution: Pollution
    clean: SequentialRecommender
    attacked: SequentialRecommender


def fit_victim(name: str, config: dict[str, Any], train: Dataset, valid: Dataset,
               seed: int, progress: bool = False) -> SequentialRecommender:
    """A sequential victim fit on ``train`` (a clear error for other models)."""
    model = make_model(name, **config)
    if not isinstance(model, SequentialRecommender):
        check_victim(model)  # the clear error: not a sequential model
    return model.fit(train, valid, seed=seed, progress=progress)


def defended_data(polluted: Dataset, defense: DefenseConfig) -> Dataset:
    """The training data the victim is retrained on under ``defense``."""
    if defense.kind != "filter":
        return polluted
    users = np.flatnonzero(polluted.user_counts() > 0)
    drop = flagged(detect(defense.detector, polluted), users, defense.share)
    keep = np.ones(polluted.n_users, dtype=bool)
    keep[drop] = False
    return polluted.select(keep[polluted.users], name=f"{polluted.name}+filtered")


def attack_victim(split: Split, victim_name: str, victim_config: dict[str, Any],
                  attack: Attack, target: int, budget: Budget, seed: int = 0,
                  defense: DefenseConfig | None = None,
                  clean: SequentialRecommender | None = None,
                  progress: bool = False) -> AttackResult:
    """Run one attack (see the module docstring).

    Args:
        split: a leave-last-out (or other) split; ``train`` is polluted, ``valid`` stops
            the retraining, ``test`` measures clean accuracy.
        victim_name, victim_config: the sequential victim.
        attack: the attack (:func:`~trustrec.attacks.base.make_attack`).
        target: target item index.
        budget: the attacker's budget.
        seed: seeds the victims, the users and the attack.
        defense: the platform's defense (default none).
        clean: the clean victim, when already trained (same name, config, seed).
        progress: progress bars.
    """
    defense = defense or DefenseConfig()
    if clean is None:
        clean = fit_victim(victim_name, victim_config, split.train, split.valid, seed,
                           progress)
    start = time.perf_counter()
    pollution = attack.perturb(clean, split.train, target, budget, seed, progress)
    seconds = time.perf_counter() - start
    config = dict(victim_config)
    if defense.kind == "adversarial":
        config["adv_eps"] = defense.eps
    attacked = fit_victim(victim_name, config, defended_data(pollution.data, defense),
                          split.valid, seed, progress)
    metrics = measure(clean, attacked, pollution, split, seed)
    metrics["attack_seconds"] = seconds
    return AttackResult(metrics, pollution, clean, attacked)


def measure(clean: SequentialRecommender, attacked: SequentialRecommender,
            pollution: Pollution, split: Split, seed: int = 0) -> dict[str, float]:
    """Every attack metric, the clean victim's as ``clean_...`` (see the module
    docstring); ``split.train`` is the clean training data."""
    known = split.known()
    target = pollution.target
    reach = audience(known, target, pollution.users)
    before = target_exposure(clean, known, reach, target, seed=seed)
    after = target_exposure(attacked, known, reach, target, seed=seed)
    others = np.setdiff1d(np.flatnonzero(split.test.user_counts() > 0), pollution.users)
    ndcg_before = clean_ndcg(clean, known, split.test, others)
    ndcg_after = clean_ndcg(attacked, known, split.test, others)
    metrics: dict[str, float] = {f"clean_{k}": v for k, v in before.items()}
    metrics.update(after)
    metrics.update(shift(before, after))
    metrics.update({"clean_ndcg@10": ndcg_before, "ndcg@10": ndcg_after,
                    "ndcg_shift": ndcg_after - ndcg_before,
                    "n_polluted": float(len(pollution.users)),
                    "n_changes": float(pollution.positions.size),
                    "n_audience": float(len(reach))})
    active = np.flatnonzero(pollution.data.user_counts() > 0)
    for name in DETECTORS:
        found = detection(detect(name, pollution.data), pollution.users, active)
        metrics.update({f"{name}_{k}": v for k, v in found.items()})
    max_len = clean.config.max_len
    metrics["sequence_distance"] = sequence_distance(
        clean, windows_of(split.train, pollution.users, max_len)[0],
        windows_of(pollution.data, pollution.users, max_len)[0])
    return metrics
