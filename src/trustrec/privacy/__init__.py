"""Attribute privacy: attackers, post-training unlearning (PoT-AU, LEGO) and defenses."""

from trustrec.privacy.adversarial import Adversarial
from trustrec.privacy.attack import ATTACKERS, audit_embeddings, audit_model
from trustrec.privacy.base import (
    DEFENSES,
    PROTECTORS,
    USER_TABLE,
    Defense,
    Protector,
    attribute_labels,
    labels_for,
    make_defense,
    make_protector,
    user_table,
    with_user_table,
)
from trustrec.privacy.lego import Lego
from trustrec.privacy.perturb import OutputNoise
from trustrec.privacy.potau import PoTAUD2D, PoTAUU2U
from trustrec.privacy.raid import RAID

__all__ = ["DEFENSES", "PROTECTORS", "USER_TABLE", "Defense", "Protector",
           "attribute_labels", "labels_for", "make_defense", "make_protector",
           "user_table", "with_user_table"]
__all__ += ["ATTACKERS", "RAID", "Adversarial", "OutputNoise", "audit_embeddings",
            "audit_model"]
__all__ += ["Lego", "PoTAUD2D", "PoTAUU2U"]
