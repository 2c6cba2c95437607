"""Training options of the shared trainer as fairness methods: SAM, EISAM, IPS and logit
adjustment for tail items, S-DRO for disadvantaged users.

Each trains the model with its long-tail option of the shared trainer
(:mod:`trustrec.train.longtail`) set, so the item-side methods sit beside In-UCDS in one
registry (:data:`~trustrec.fairness.inprocess.FAIRNESS`) and one bench axis. The options
are fields of the model's config (:class:`~trustrec.train.longtail.TailOptions`: the
sequential models and NeuMF have them all; BPR-MF has SAM's and EISAM's, per training
row in its numba SGD, :func:`~trustrec.models.bpr.bpr_sam_epoch`); a model without them
is a clear error. The method's config overrides the model config's values of the same
names (S-DRO's ``top`` is the model's ``sdro_top``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar

from pydantic import Field

from trustrec.config import NonNegativeFloat, PositiveFloat, UnitInterval, to_dict, typed_config
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.fairness.inprocess import FAIRNESS, FairTraining
from trustrec.models.base import MODELS, EmbeddingRecommender, make_model


class TailTraining(FairTraining):
    """Train with fixed long-tail options of the model config (see the module
    docstring); subclasses set ``options`` and a ``Config`` of the tuned values."""

    options: ClassVar[dict[str, Any]] = {}
    #: Method config names that are named otherwise in the model config.
    renames: ClassVar[dict[str, str]] = {}

    @classmethod
    def applies_to(cls, model: str) -> bool:
        """Models whose config has the trainer's long-tail options."""
        fields = {f.name for f in dataclasses.fields(MODELS.get(model).Config)}
        return set(cls.options) <= fields

    def fit(self, model: EmbeddingRecommender, train: Dataset, valid: Dataset | None = None,
            *, seed: int = 0, progress: bool = False) -> EmbeddingRecommender:
        """A copy of ``model``'s config with the options set, trained."""
        base = to_dict(model.config)
        wanted = {**self.options, **{self.renames.get(k, k): v
                                     for k, v in self.config_dict().items()}}
        missing = sorted(set(wanted) - set(base))
        if missing:
            raise ConfigError(f"fairness method {self.name!r} sets {', '.join(missing)} of "
                              f"the shared trainer; model {model.name!r} has no such "
                              "option (the sequential models and NeuMF have them; "
                              "BPR-MF has SAM's and EISAM's)")
        trained = make_model(model.name, **{**base, **wanted})
        trained.fit(train, valid, seed=seed, progress=progress)
        trained.fit_info_["fairness"] = {"method": self.name, "config": wanted}
        return trained


@typed_config
class SAMConfig:
    """Attributes:
        rho: the SAM radius."""

    rho: PositiveFloat = 0.05


@typed_config
class EISAMConfig:
    """Attributes:
        rho: the radius.
        eisam_lambda: share of a tail item's loss made sharpness-aware.
        eisam_gamma: exponent of the frequency weight."""

    rho: PositiveFloat = 0.05
    eisam_lambda: UnitInterval = 1.0
    eisam_gamma: NonNegativeFloat = 1.0


@typed_config
class ReweightConfig:
    """Attributes:
        reweight_power: IPS exponent or the logit adjustment's τ."""

    reweight_power: NonNegativeFloat = 1.0


@typed_config
class SDROConfig:
    """S-DRO's options (:mod:`trustrec.train.longtail`; ``sdro_eta`` tuned out of sample).

    Attributes:
        sdro_eta: step size of the group weights.
        sdro_beta: streaming rate of the group-loss estimates.
        top: share of users that are advantaged (the spec's, as UGF measures)."""

    sdro_eta: NonNegativeFloat = 1.0
    sdro_beta: UnitInterval = 0.1
    top: Annotated[float, Field(gt=0, lt=1)] = 0.05


def _register(name: str, config: type, options: dict[str, Any], doc: str,
              renames: dict[str, str] | None = None) -> type[TailTraining]:
    """A :class:`TailTraining` method registered as ``name``."""
    cls = type(name.title().replace("-", ""), (TailTraining,),
               {"name": name, "Config": config, "options": options, "__doc__": doc,
                "renames": renames or {}, "__module__": __name__})
    return FAIRNESS.register(name)(cls)


SAM = _register("sam", SAMConfig, {"optimizer": "sam"},
                "Sharpness-aware minimisation (every sample alike).")
EISAM = _register("eisam", EISAMConfig, {"optimizer": "eisam"},
                  "Item-wise SAM weighted toward tail items.")
IPS = _register("ips", ReweightConfig, {"reweight": "ips"},
                "Inverse-popularity sample weights.")
LogitAdjust = _register("logit-adjust", ReweightConfig, {"reweight": "logit_adjust"},
                        "Popularity offsets on the training logits.")
SDRO = _register("s-dro", SDROConfig, {"reweight": "sdro"},
                 "Streaming DRO over advantaged and disadvantaged users (Wen et al.).",
                 {"top": "sdro_top"})
