"""Recommenders: the protocol, the capability protocols, the registry, the models."""

from trustrec.models import (  # noqa: F401  (register models)
    bcemf,
    bert4rec,
    bpr,
    gru4rec,
    lightgcn,
    llmrec,
    narm,
    neumf,
    sasrec,
    wmf,
)
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
    TrainsUserTables,
    WarmStart,
    has,
    models_with,
    require,
)

__all__ = ["MODELS", "DotProductScores", "EmbeddingRecommender", "HasTrainingObjective",
           "PairScorer", "Recommender", "ReleasesUserTable", "TrainsUserTables", "WarmStart",
           "has", "load_model", "make_model", "models_with", "require"]
