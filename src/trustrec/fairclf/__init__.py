"""Fair classification, centralised and federated, multi-class: group-fairness criteria
on per-group confusion matrices (:mod:`.criteria`), OptFair post-processing
(:mod:`.optfair`) and in-processing (:mod:`.inprocess`), FedFACT (:mod:`.fedfact`,
:mod:`.inprocess`), WassFFed (:mod:`.wassffed`), fairlearn's mitigators as peers
(:mod:`.peers`), every method behind :func:`.run.run_fair_method`."""
