"""trustrec.fairness: methods that make a recommender fairer to users (In-UCDS, In-Naive,
S-DRO, UGF re-ranking) and to tail items (SAM, EISAM, IPS, logit adjustment), in one
registry, and their building blocks (constrained dominant sets, the 0-1 re-ranking)."""

from trustrec.fairness import rerank, tail  # noqa: F401  (register their methods)
from trustrec.fairness.inprocess import FAIRNESS, FairTraining, make_fairness
from trustrec.fairness.rerank import ugf_rerank
from trustrec.fairness.ucds import dominant_sets, naive_neighbors

__all__ = ["FAIRNESS", "FairTraining", "dominant_sets", "make_fairness", "naive_neighbors",
           "ugf_rerank"]
