"""Unlearning: the Unlearner protocol, forget requests, methods and persistence.

Registered methods: ``retrain`` (exact, full retrain), ``sisa`` (exact, user shards),
``receraser`` and ``ultrare`` (exact, clustered shards with a learned combiner);
``scif`` and ``ifru`` (approximate, influence functions), ``finetune`` and ``neggrad``
(approximate baselines); ``noop`` and ``reset-rows`` (negative controls that forget
nothing, :mod:`trustrec.unlearn.controls`).
"""

from trustrec.data.request import ForgetRequest
from trustrec.unlearn import retrain, sisa  # noqa: F401  (register methods)
from trustrec.unlearn.base import (
    UNLEARNERS,
    ForgetReport,
    Unlearner,
    UnlearnerBase,
    make_unlearner,
)
from trustrec.unlearn.controls import NoOp, ResetRows  # (registers the controls)
from trustrec.unlearn.ensemble import ShardEnsemble
from trustrec.unlearn.finetune import FineTune, NegGrad  # (registers "finetune", "neggrad")
from trustrec.unlearn.ifru import IFRU  # (registers "ifru")
from trustrec.unlearn.laser import CURRICULA, LASER  # (registers "laser")
from trustrec.unlearn.persist import load_unlearner, save_unlearner
from trustrec.unlearn.receraser import RecEraser  # (registers "receraser")
from trustrec.unlearn.retrain import Retrain
from trustrec.unlearn.scif import SCIF, InfluenceUnlearner  # (registers "scif")
from trustrec.unlearn.sisa import AGGREGATIONS, SISA, balanced_partition
from trustrec.unlearn.ultrare import UltraRE  # (registers "ultrare")

__all__ = [
    "AGGREGATIONS",
    "CURRICULA",
    "IFRU",
    "LASER",
    "SISA",
    "ShardEnsemble",
    "UNLEARNERS",
    "UltraRE",
    "ForgetReport",
    "FineTune",
    "ForgetRequest",
    "InfluenceUnlearner",
    "NegGrad",
    "NoOp",
    "RecEraser",
    "ResetRows",
    "Retrain",
    "SCIF",
    "Unlearner",
    "UnlearnerBase",
    "balanced_partition",
    "load_unlearner",
    "make_unlearner",
    "save_unlearner",
]
