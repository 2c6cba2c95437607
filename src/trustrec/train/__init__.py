"""Training utilities shared by every gradient-trained model."""

from trustrec.train.loop import train_epochs
from trustrec.train.sampling import sample_negatives

__all__ = ["sample_negatives", "train_epochs"]
