"""Attribute privacy: attackers, post-training unlearning (PoT-AU, LEGO) and defenses."""

from trustrec.privacy.adversarial import Adversarial
from trustrec.privacy.attack import (
    ATTACKERS,
    VIEWS,
    audit_embeddings,
    audit_model,
    leakage,
    null_interval,
    outside_null,
)
from trustrec.privacy.base import (
    DEFENSES,
    PROTECTORS,
    Defense,
    Protector,
    attribute_labels,
    label_share_users,
    labels_for,
    make_defense,
    make_protector,
    mask_labels,
    restrict_labels,
    user_table,
    with_user_table,
)
from trustrec.privacy.lego import Lego
from trustrec.privacy.perturb import HideTable, OutputNoise
from trustrec.privacy.potau import PoTAUD2D, PoTAUU2U
from trustrec.privacy.raid import RAID

__all__ = ["DEFENSES", "PROTECTORS", "Defense", "Protector",
           "attribute_labels", "label_share_users", "labels_for", "make_defense",
           "make_protector", "mask_labels", "restrict_labels", "user_table",
           "with_user_table"]
__all__ += ["ATTACKERS", "RAID", "VIEWS", "Adversarial", "HideTable", "OutputNoise",
            "audit_embeddings", "audit_model", "leakage", "null_interval", "outside_null"]
__all__ += ["Lego", "PoTAUD2D", "PoTAUU2U"]
