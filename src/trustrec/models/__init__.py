"""Recommenders: the protocol, the capability protocols, the registry, the models."""

from trustrec.models import bcemf, bpr, lightgcn, neumf, sasrec, wmf  # noqa: F401  (register models)
from trustrec.models.base import (
    MODELS,
    EmbeddingRecommender,
    Recommender,
    load_model,
    make_model,
)
from trustrec.models.capabilities import (
    DotProductScores,
    HasTrainingObjective,
    PairScorer,
    ReleasesUserTable,
    WarmStart,
    has,
    models_with,
    require,
)

__all__ = ["MODELS", "DotProductScores", "EmbeddingRecommender", "HasTrainingObjective",
           "PairScorer", "Recommender", "ReleasesUserTable", "WarmStart", "has",
           "load_model", "make_model", "models_with", "require"]
