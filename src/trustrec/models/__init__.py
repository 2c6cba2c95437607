"""Recommenders: the protocol, the registry, and the registered models."""

from trustrec.models import bcemf, bpr, lightgcn, neumf, wmf  # noqa: F401  (register models)
from trustrec.models.base import (
    MODELS,
    EmbeddingRecommender,
    Recommender,
    load_model,
    make_model,
)

__all__ = ["MODELS", "EmbeddingRecommender", "Recommender", "load_model", "make_model"]
