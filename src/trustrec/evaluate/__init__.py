"""trustrec.evaluate: ranking utility, fairness and completeness metrics (per user first),
and membership inference on forgotten data."""

from trustrec.evaluate.completeness import (
    agreement_report,
    forgotten_item_percentile,
    rank_correlation,
    topk_overlap,
)
from trustrec.evaluate.fairness import (
    a_igf,
    a_igf_signed,
    activity_groups,
    group_metrics,
    shard_fairness,
)
from trustrec.evaluate.membership import (
    membership_report,
    membership_sets,
    rank_percentiles,
)
from trustrec.evaluate.ranking import (
    METRICS,
    dataset_csr,
    evaluate_ranking,
    ndcg_at,
    rank_topk,
    summarize,
)

__all__ = [
    "METRICS",
    "a_igf",
    "a_igf_signed",
    "activity_groups",
    "agreement_report",
    "dataset_csr",
    "evaluate_ranking",
    "forgotten_item_percentile",
    "group_metrics",
    "membership_report",
    "membership_sets",
    "ndcg_at",
    "rank_correlation",
    "rank_percentiles",
    "rank_topk",
    "shard_fairness",
    "summarize",
    "topk_overlap",
]
