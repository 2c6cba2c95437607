"""Scaffolding shared by the in-training defenses (RAID, adversarial training).

Both defenses train in two phases:

1. **Warm-up**: ordinary training of the registered model with its own config (early
   stopping on validation included), for at most ``warmup_epochs`` epochs (``None``: the
   model config's ``epochs``). With the same seed this is exactly the undefended model.
2. **Defended training**: ``defense_epochs`` more epochs, warm-started from phase 1
   (``fit(init=...)``, with a seed derived for this phase), where after every epoch the
   defense's step (:meth:`DefenseBase._make_step`) changes the released user table in
   place through the model's ``fit(callback=...)`` hook. The model must therefore have
   the :class:`~trustrec.models.capabilities.WarmStart` and
   :class:`~trustrec.models.capabilities.ReleasesUserTable` capabilities
   (``DefenseBase.needs``), checked before any training. Validation (when given) runs
   after the step, so early stopping and the best-state restore only ever pick a defended
   state.

Choices:
    * The step acts on the *released* table (the model's ``released_user_table()``, a
      view of its tensor): BPR-MF's and WMF's user factors, whose next epoch then trains
      on from the moved embeddings; NeuMF's GMF user table; for LightGCN the propagated
      cache, which the next epoch recomputes from the layer-0 weights, so there the
      defense shapes what is released after each epoch rather than the weights
      themselves.
    * Phase 2 is a new ``fit`` (warm start), so it restarts the model's learning-rate
      schedule; ``lr_scale`` multiplies the model's ``lr`` in phase 2 (models without an
      ``lr``, e.g. WMF's ALS, ignore it) so that fine-tuning does not start at the
      from-scratch rate. Without it, BPR-MF on ML-100K loses ~0.015 test NDCG@20 from
      10 extra epochs at its initial rate alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from trustrec.config import Configured, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models.base import EmbeddingRecommender, make_model
from trustrec.models.capabilities import ReleasesUserTable, WarmStart, require
from trustrec.privacy.base import labelled_users, restrict_labels
from trustrec.seeding import child_seed

#: ``step(model, epoch) -> info`` run after each phase-2 epoch; returns JSON-ready numbers.
DefenseStep = Callable[[EmbeddingRecommender, int], dict[str, float]]


def check_defense_labels(labels: Mapping[str, np.ndarray], n_users: int
                         ) -> dict[str, np.ndarray]:
    """Checked int64 copies of ``{attribute: labels}`` (``-1`` = unknown) for ``n_users``.

    Raises:
        ConfigError: no attribute given.
        DataFormatError: labels that are not one integer >= -1 per user, or an attribute
            with fewer than two classes among the labelled users.
    """
    if not labels:
        raise ConfigError("no attribute labels given (e.g. labels_for(train, ['gender']))")
    out: dict[str, np.ndarray] = {}
    for name, lab in labels.items():
        arr = np.asarray(lab)
        if arr.ndim != 1 or len(arr) != n_users:
            raise DataFormatError(f"labels of {name!r} must be one integer per user "
                                  f"({n_users}), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer) or (arr < -1).any():
            raise DataFormatError(f"labels of {name!r} must be integers >= -1 (-1 = "
                                  f"unknown), got {arr.dtype}")
        if len(np.unique(arr[arr >= 0])) < 2:
            raise DataFormatError(f"attribute {name!r} has fewer than two classes among the "
                                  "labelled users; nothing to defend")
        out[str(name)] = arr.astype(np.int64)
    return out


@typed_config
class DefenseConfig:
    """The phase options every in-training defense has (its config extends this one).

    Attributes:
        warmup_epochs: phase-1 epochs (ordinary training); None = the model's ``epochs``.
        defense_epochs: phase-2 epochs, each followed by the defense's step.
        lr_scale: phase-2 learning rate as a multiple of the model's ``lr``.
    """

    warmup_epochs: PositiveInt | None = None
    defense_epochs: PositiveInt = 10
    lr_scale: PositiveFloat = 0.3


def released_tensor(model: ReleasesUserTable) -> torch.Tensor:
    """The released user table of ``model`` as a tensor sharing its memory (changes act
    in place)."""
    return torch.from_numpy(model.released_user_table())


def write_in_place(model: ReleasesUserTable, table: np.ndarray | torch.Tensor) -> None:
    """Overwrite the released user table of ``model`` in place (no autograd record)."""
    t = released_tensor(model)
    with torch.no_grad():
        t.copy_(torch.as_tensor(np.asarray(table), dtype=t.dtype))


class DefenseBase(Configured):
    """Base of the in-training defenses: two-phase training, checks, the defense record.

    Subclasses set ``name`` and a typed ``Config`` extending :class:`DefenseConfig`, and
    implement :meth:`_make_step`; ``needs`` lists the model capabilities used.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[type, ...]] = (ReleasesUserTable, WarmStart)
    Config: ClassVar[type] = DefenseConfig

    def fit(self, model: str, model_config: Mapping[str, Any], train: Dataset,
            valid: Dataset | None, labels: Mapping[str, np.ndarray], *, seed: int = 0,
            progress: bool = False, label_users: np.ndarray | None = None
            ) -> EmbeddingRecommender:
        """Train ``model`` with this defense (see the module docstring for the phases).

        Args:
            model: registered model name, e.g. ``"bpr"``.
            model_config: the model's config values (its ``epochs`` bounds phase 1 unless
                ``warmup_epochs`` is set; phase 2 runs ``defense_epochs``).
            train: training interactions.
            valid: validation interactions (early stopping, model selection), or None.
            labels: ``{attribute: int labels per user index}``, ``-1`` = unknown.
            seed: root seed; phase 1 uses it as is, phase 2 a child seed.
            progress: show progress bars.
            label_users: the users whose labels the defense may use (indices or a boolean
                mask; :func:`trustrec.privacy.base.label_share_users`); the others count as
                unknown. None: every label given.

        Returns:
            The trained model (saved and loaded like any other); ``fit_info_["defense"]``
            records the defense, its config, the attributes, the number of users whose
            labels it used, the seconds of each phase and the per-epoch step record;
            ``fit_info_["warmup"]`` keeps phase 1's record.

        Raises:
            ConfigError / UnknownNameError: bad model name or config, or a model without
                a capability the defense needs (``needs``).
            DataFormatError: bad labels.
        """
        checked = check_defense_labels(restrict_labels(labels, label_users), train.n_users)
        cfg = self.config
        m_cfg = dict(model_config)
        if cfg.warmup_epochs is not None:
            m_cfg["epochs"] = cfg.warmup_epochs
        warm = make_model(model, **m_cfg)  # bad names/options fail before any training
        require(warm, *self.needs, by=f"defense {self.name!r}")
        t0 = time.perf_counter()
        warm.fit(train, valid, seed=int(seed), progress=progress)
        t1 = time.perf_counter()
        final_cfg = {**m_cfg, "epochs": cfg.defense_epochs}
        if hasattr(warm.config, "lr"):
            final_cfg["lr"] = float(warm.config.lr) * cfg.lr_scale
        final = make_model(model, **final_cfg)
        step = self._make_step(final, train, checked, seed=int(seed))
        steps: list[dict[str, float]] = []

        def callback(m: EmbeddingRecommender, epoch: int) -> None:
            steps.append({"epoch": epoch, **step(m, epoch)})

        final.fit(train, valid, seed=child_seed(seed, self.name, "defense"),
                  progress=progress, init=warm.warm_start_state(), callback=callback)
        t2 = time.perf_counter()
        record = {"defense": self.name, "config": self.config_dict(),
                  "attributes": list(checked), "seed": int(seed),
                  "labelled_users": int(labelled_users(checked).sum()),
                  "warmup_seconds": t1 - t0, "defense_seconds": t2 - t1,
                  "seconds": t2 - t0, "steps": steps}
        final.fit_info_["warmup"] = {k: v for k, v in warm.fit_info_.items()
                                     if k != "history"}
        final.fit_info_["defense"] = record
        return final

    def _make_step(self, model: EmbeddingRecommender, train: Dataset,
                   labels: dict[str, np.ndarray], *, seed: int) -> DefenseStep:
        """The per-epoch step of phase 2 (may keep state across epochs in a closure)."""
        raise NotImplementedError
