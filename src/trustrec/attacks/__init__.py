"""Profile-pollution attacks on sequential recommenders, their metrics, detectors and
defenses."""

from trustrec.attacks import creat, heuristics  # noqa: F401  (register attacks)
from trustrec.attacks.base import ATTACKS, Attack, Budget, Pollution, make_attack

__all__ = ["ATTACKS", "Attack", "Budget", "Pollution", "make_attack"]
