"""fairlearn's mitigators as peers, measured in the same run (optional extra
``trustrec[fairclf]``): ``ExponentiatedGradient`` (in-processing, Agarwal et al. 2018)
and ``ThresholdOptimizer`` (post-processing, Hardt et al. 2016), both around a
standardised logistic regression.

They apply to **binary** labels only (fairlearn's reductions do not support multi-class)
and are centralised. Their constraints are ours: fairlearn's ``DemographicParity``,
``TruePositiveRateParity`` and ``EqualizedOdds`` bound ``|E[h | A = a, S] − E[h | S]|``
by ``difference_bound``, the same ``d_c`` ξ bounds here, so ExponentiatedGradient gets
ξ as its bound. ThresholdOptimizer has no budget (exact parity on its training rows) and
reads the sensitive attribute at prediction time. Both predict at random (seeded).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from trustrec.errors import ConfigError
from trustrec.fairclf.criteria import CRITERIA

PEERS = ("fairlearn-expgrad", "fairlearn-threshold")
_MOMENTS = {"dp": "DemographicParity", "eop": "TruePositiveRateParity",
            "eodds": "EqualizedOdds"}
_THRESHOLD = {"dp": "demographic_parity", "eop": "true_positive_rate_parity",
              "eodds": "equalized_odds"}


def require_fairlearn() -> None:
    """Raise a clear error when fairlearn is not installed."""
    if importlib.util.find_spec("fairlearn") is None:
        raise ConfigError("the fairlearn peers need fairlearn: pip install 'trustrec[fairclf]'")


def fairlearn_predict(peer: str, criterion: str, xi: float, x: np.ndarray, y: np.ndarray,
                      group: np.ndarray, x_test: np.ndarray, group_test: np.ndarray,
                      seed: int) -> np.ndarray:
    """Fit ``peer`` on ``(x, y, group)`` and predict the test rows.

    Raises:
        ConfigError: an unknown peer or criterion, a label that is not binary, or
            fairlearn missing.
    """
    if peer not in PEERS:
        raise ConfigError(f"unknown fairlearn peer {peer!r}; choose one of {', '.join(PEERS)}")
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown fairness criterion {criterion!r}")
    if len(np.unique(y)) != 2:
        raise ConfigError(f"fairlearn's mitigators are binary; this label has "
                          f"{len(np.unique(y))} classes")
    require_fairlearn()

    # float64: ThresholdOptimizer writes float64 probabilities into a Series of x's dtype
    x, x_test = np.asarray(x, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    scaler = StandardScaler().fit(x)
    x, x_test = scaler.transform(x), scaler.transform(x_test)
    base = LogisticRegression(max_iter=2000)
    with warnings.catch_warnings():
        # fairlearn 0.15 trips pandas' deprecation warnings (its code, not ours)
        warnings.filterwarnings("ignore", module="fairlearn")
        return _fit_predict(peer, criterion, xi, base, x, y, group, x_test, group_test, seed)


def _fit_predict(peer: str, criterion: str, xi: float, base: LogisticRegression,
                 x: np.ndarray, y: np.ndarray, group: np.ndarray, x_test: np.ndarray,
                 group_test: np.ndarray, seed: int) -> np.ndarray:
    import fairlearn.postprocessing as post
    import fairlearn.reductions as red

    if peer == "fairlearn-expgrad":
        moment = getattr(red, _MOMENTS[criterion])(difference_bound=xi)
        model = red.ExponentiatedGradient(base, constraints=moment)
        model.fit(x, y, sensitive_features=group)
        return np.asarray(model.predict(x_test, random_state=seed))
    model = post.ThresholdOptimizer(estimator=base, constraints=_THRESHOLD[criterion],
                                    predict_method="predict_proba")
    model.fit(x, y, sensitive_features=group)
    return np.asarray(model.predict(x_test, sensitive_features=group_test, random_state=seed))
