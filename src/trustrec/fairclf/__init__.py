"""Fair classification: group-fairness criteria on per-group confusion matrices and the
optimal fair classifier (OptFair), multi-class, from an attribute-blind model."""
