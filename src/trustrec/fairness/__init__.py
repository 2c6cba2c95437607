"""trustrec.fairness: methods that make a recommender fairer to users (In-UCDS, In-Naive)
and to tail items (SAM, EISAM, IPS, logit adjustment), in one registry, and their
building blocks (constrained dominant sets)."""

from trustrec.fairness import tail  # noqa: F401  (registers the long-tail methods)
from trustrec.fairness.inprocess import FAIRNESS, FairTraining, make_fairness
from trustrec.fairness.ucds import dominant_sets, naive_neighbors

__all__ = ["FAIRNESS", "FairTraining", "dominant_sets", "make_fairness", "naive_neighbors"]
