"""Unlearning: the Unlearner protocol, forget requests, methods and persistence.

Registered methods: ``retrain`` (exact, full retrain) and ``sisa`` (exact, user shards).
"""

from trustrec.unlearn import retrain, sisa  # noqa: F401  (register methods)
from trustrec.unlearn.base import (
    UNLEARNERS,
    ForgetReport,
    Unlearner,
    UnlearnerBase,
    make_unlearner,
)
from trustrec.unlearn.persist import load_unlearner, save_unlearner
from trustrec.unlearn.request import ForgetRequest
from trustrec.unlearn.retrain import Retrain
from trustrec.unlearn.sisa import AGGREGATIONS, SISA, balanced_partition

__all__ = [
    "AGGREGATIONS",
    "SISA",
    "UNLEARNERS",
    "ForgetReport",
    "ForgetRequest",
    "Retrain",
    "Unlearner",
    "UnlearnerBase",
    "balanced_partition",
    "load_unlearner",
    "make_unlearner",
    "save_unlearner",
]
