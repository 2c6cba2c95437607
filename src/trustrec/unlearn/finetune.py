"""Generic approximate unlearning baselines: fine-tuning on retained data, and NegGrad.

* ``finetune``: continue training the current model on the remaining data for a few
  epochs (a warm start, the model's :class:`~trustrec.models.capabilities.WarmStart`
  capability: ``model.fit(remaining, valid, init=model.warm_start_state())``). Cheap,
  and the model keeps its utility, but what the forgotten rows taught it fades only as
  far as those few epochs overwrite it (catastrophic forgetting as an unlearning tool).
* ``neggrad``: gradient *ascent* on the forgotten rows' training loss for a few steps
  (Adam or SGD on the model's differentiable objective, its
  :class:`~trustrec.models.capabilities.HasTrainingObjective` capability), pushing the
  model away from what those rows taught. Nothing anchors the retained data, so too many
  or too large steps hurt utility.

Both hold one model, trained normally by ``fit`` (seed ``child_seed(seed, "model")``, as
in :class:`~trustrec.unlearn.retrain.Retrain`, which also supplies scoring and
persistence), support user, interaction and item requests, and are not exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from trustrec.config import NonNegativeInt, PositiveFloat, PositiveInt, typed_config
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.models.capabilities import HasTrainingObjective, WarmStart
from trustrec.models.objective import objective_seed, sorted_keys
from trustrec.seeding import child_seed
from trustrec.threads import torch_threads
from trustrec.unlearn.base import UNLEARNERS
from trustrec.unlearn.retrain import Retrain

Optimizer = Literal["adam", "sgd"]


@typed_config
class FineTuneConfig:
    """Options of fine-tuning.

    Attributes:
        epochs: training epochs per request (replaces the model's ``epochs``).
        lr_scale: multiplies the model's ``lr`` during fine-tuning (models without one,
            like WMF's ALS, ignore it).
        use_valid: early-stop / keep the best state on the remaining validation data, as
            a normal fit does (otherwise the last epoch's state is kept).
    """

    epochs: PositiveInt = 5
    lr_scale: PositiveFloat = 0.3
    use_valid: bool = True


@UNLEARNERS.register("finetune")
class FineTune(Retrain):
    """Fine-tuning: warm-started training on the remaining data for a few epochs.

    Choices:

    * Each request trains a new model object from the current parameters with the model's
      own training procedure and config, except ``epochs``; the seed of request ``n`` is
      ``child_seed(seed, "finetune", n)`` (``n`` counts the calls in the history, so a
      loaded unlearner continues the same sequence).
    * Embeddings that no remaining row touches (a forgotten user's, with BPR) keep their
      values: plain fine-tuning does not reset them. Models whose training recomputes
      every row from the data (WMF's ALS) do reset them.
    """

    name = "finetune"
    exact = False
    supports = frozenset({"user", "interaction", "item"})
    needs = (WarmStart,)
    Config = FineTuneConfig

    def __init__(self, model: str, model_config: dict[str, Any] | None = None,
                 config: Any = None) -> None:
        super().__init__(model, model_config, config)
        fields = {f.name for f in dataclasses.fields(self._new_model().config)}
        if "epochs" not in fields:
            raise ConfigError(f"method finetune needs a model with an 'epochs' option; "
                              f"{self.model!r} has none")

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        from trustrec.models import make_model

        cfg: FineTuneConfig = self.config
        seed = child_seed(self.seed_, "finetune", len(self.history_))
        overrides: dict[str, Any] = {"epochs": cfg.epochs}
        base = self._new_model().config
        if hasattr(base, "lr"):
            overrides["lr"] = base.lr * cfg.lr_scale
        model = make_model(self.model, **{**self.model_config, **overrides})
        model.fit(train, valid if cfg.use_valid else None, seed=seed,
                  init=self.model_.warm_start_state())
        info = model.fit_info_
        self.model_ = model  # commit
        return ["fine-tune"], {"epochs_run": info.get("epochs_run"),
                               "best_epoch": info.get("best_epoch"), "seed": seed}


@typed_config
class NegGradConfig:
    """Options of NegGrad.

    Attributes:
        steps: gradient-ascent steps per request.
        lr: learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        num_threads: torch threads during ``forget`` (0 keeps torch's setting).
    """

    steps: PositiveInt = 10
    lr: PositiveFloat = 0.003
    optimizer: Optimizer = "adam"
    num_threads: NonNegativeInt = 1


@UNLEARNERS.register("neggrad")
class NegGrad(Retrain):
    """NegGrad: gradient ascent on the forgotten rows' loss.

    Choices:

    * The ascended loss is the mean over the forgotten rows of their data terms only
      (:meth:`~trustrec.models.objective.Objective.row_loss` without the L2 terms, which
      ascent would simply inflate), with the row's hashed negatives (BPR, NeuMF); the
      parameters are the model's embedding tables (NeuMF's MLP stays as it is).
    * Only the rows the forgotten terms touch move: their gradient is zero elsewhere, and
      so is the Adam / SGD update.
    * The model must have a differentiable training objective (the
      :class:`~trustrec.models.capabilities.HasTrainingObjective` capability); otherwise
      the constructor raises ConfigError.
    """

    name = "neggrad"
    exact = False
    supports = frozenset({"user", "interaction", "item"})
    needs = (HasTrainingObjective,)
    Config = NegGradConfig

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        cfg: NegGradConfig = self.config
        old = self.train_
        with torch_threads(cfg.num_threads):
            obj = self.model_.training_objective(objective_seed(self.seed_))
            rows = obj.rows(old.select(train_removed), sorted_keys(old))
            params = {k: v.requires_grad_() for k, v in obj.params().items()}
            opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
            opt = opt_cls(list(params.values()), lr=cfg.lr)
            losses = []
            for _ in range(cfg.steps):
                loss = obj.row_loss(params, rows, regularize=False) / max(len(rows), 1)
                opt.zero_grad(set_to_none=True)
                (-loss).backward()
                opt.step()
                losses.append(float(loss.detach()))
            with torch.no_grad():
                final = float(obj.row_loss(params, rows, regularize=False)) / max(len(rows), 1)
            new_params = {**self.model_.params_,
                          **{k: v.detach().clone() for k, v in params.items()}}
        self.model_.params_ = new_params  # commit
        return ["gradient ascent"], {"steps": cfg.steps, "loss_before": losses[0],
                                     "loss_after": final}
