"""Attribute privacy: attackers, post-training unlearning (PoT-AU, LEGO) and defenses."""

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
    scores_with,
    user_table,
    with_user_table,
)

__all__ = ["DEFENSES", "PROTECTORS", "USER_TABLE", "Defense", "Protector",
           "attribute_labels", "labels_for", "make_defense", "make_protector", "scores_with",
           "user_table", "with_user_table"]
