"""Synthetic data with MovieLens-1M's shape, for timing only.

MovieLens-1M cannot be downloaded on every machine (offline CI, sandboxes), yet speed claims
("forget at least 20x faster than retraining at ML-1M scale") need data of that size and
skew. :func:`ml1m_shaped` draws such data: the same numbers of users, items and
interactions, a long-tailed item popularity and user activity, and user attributes with
ML-1M's marginals.

**Timing only, never a quality figure.** Who interacts with what is random apart from the
popularity and activity skew: there is no preference structure to learn, so ranking
metrics, fairness gaps or attribute-inference accuracies measured on it mean nothing.
The dataset's name, ``"synthetic-ml-1m-shape"``, says so wherever it is reported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.data.loaders import ML1M_OCCUPATIONS
from trustrec.errors import ConfigError
from trustrec.seeding import rng

#: Name of every dataset :func:`ml1m_shaped` returns.
SYNTHETIC_ML1M_NAME = "synthetic-ml-1m-shape"

#: ML-1M's users per gender, age code and occupation code (``users.dat``, 6,040 users).
ML1M_GENDER_COUNTS = {"M": 4331, "F": 1709}
ML1M_AGE_COUNTS = {"1": 222, "18": 1103, "25": 2096, "35": 1193, "45": 550, "50": 496,
                   "56": 380}
ML1M_OCCUPATION_COUNTS = (711, 528, 267, 173, 759, 112, 236, 679, 17, 92, 195, 129, 388,
                          142, 302, 144, 241, 502, 70, 72, 281)
#: ML-1M's share of ratings 1..5.
ML1M_RATING_SHARES = (0.0562, 0.1075, 0.2613, 0.3489, 0.2261)
#: First and last ML-1M timestamps (2000-04-25 and 2003-02-28, seconds since the epoch).
ML1M_TIME_RANGE = (956_703_932, 1_046_454_590)

# Log-normal spreads chosen so that mean / median matches ML-1M: items 269.9 / 123.5
# (exp(s^2 / 2) = 2.19, s = 1.25); users' activity above the minimum 145.6 / 76
# (s = 1.14). The largest user profile is capped at 62.5 % of the items (ML-1M: 2,314 of
# 3,706). Seed 0 gives (ML-1M in brackets): activity min 22 (20), median 100 (96), max
# 2,316 (2,314); item count median 151 (123.5), max 4,271 (3,428); the top tenth of the
# items holds 41 % of the interactions.
_ITEM_SIGMA = 1.25
_USER_SIGMA = 1.14
_MAX_PROFILE_SHARE = 0.625
_CHUNK_CELLS = 4_000_000  # users x items keys drawn at once (32 MB of float64)


def _activity(gen: np.random.Generator, n_users: int, total: int, low: int, cap: int
              ) -> np.ndarray:
    """Per-user interaction counts: ``low + lognormal``, capped, summing to ``total``."""
    x = gen.lognormal(0.0, _USER_SIGMA, n_users)
    counts = np.full(n_users, float(low))
    free = np.ones(n_users, dtype=bool)
    extra = float(total - low * n_users)
    for _ in range(64):  # water-filling: hand what the capped users cannot take to the rest
        counts[free] = low + extra * x[free] / x[free].sum()
        over = free & (counts > cap)
        if not over.any():
            break
        counts[over] = cap
        free &= ~over
        extra = float(total - cap * (~free).sum() - low * free.sum())
    whole = np.minimum(np.floor(counts).astype(np.int64), cap)
    short = total - int(whole.sum())
    if short > 0:  # largest remainders first, among users below the cap
        frac = np.where(whole < cap, counts - whole, -1.0)
        whole[np.argsort(-frac, kind="stable")[:short]] += 1
    return whole


def _draw_items(gen: np.random.Generator, activity: np.ndarray, log_weight: np.ndarray
                ) -> np.ndarray:
    """Distinct items per user, drawn by weight without replacement (Gumbel top-k).

    Users are processed in chunks of rows of a users x items key matrix; each row's
    ``activity[u]`` largest keys ``log w + Gumbel`` are a weighted sample without
    replacement (Efraimidis-Spirakis), so no pair repeats.
    """
    n_users, n_items = len(activity), len(log_weight)
    rows = max(1, _CHUNK_CELLS // n_items)
    cols = np.arange(n_items)
    parts = []
    for start in range(0, n_users, rows):
        d = activity[start:start + rows]
        keys = gen.gumbel(size=(len(d), n_items)) + log_weight
        order = np.argsort(-keys, axis=1)
        parts.append(order[cols < d[:, None]])
    return np.concatenate(parts).astype(np.int32)


def _counts_to_probs(counts: tuple[int, ...] | list[int]) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    return c / c.sum()


def ml1m_shaped(seed: int = 0, *, n_users: int = 6040, n_items: int = 3706,
                n_interactions: int = 1_000_209, min_activity: int = 20) -> Dataset:
    """Random interactions with MovieLens-1M's shape. **Timing only, never a quality figure.**

    What is drawn (all vectorised; about a second for the default size on one core):

    * item popularity: log-normal weights (spread fitted to ML-1M's mean / median item
      count), so that a tenth of the items holds close to half of the interactions;
    * user activity: ``min_activity`` (ML-1M: every user has at least 20 ratings) plus a
      log-normal share of the rest, capped at 62.5 % of the items, summing exactly to
      ``n_interactions``;
    * each user's items: a weighted sample without replacement (no duplicate pairs);
    * timestamps within ML-1M's range (2000-04 to 2003-02), each user active from a
      random start, most ratings soon after it; ratings 1-5 with ML-1M's shares;
    * user attributes ``gender``, ``age`` (ML-1M age codes) and ``occupation`` (ML-1M's
      names), drawn independently of everything else with ML-1M's marginals.

    Interactions are random given popularity and activity: no preference structure exists
    to be learned, so utility, fairness or privacy figures measured on this data are
    meaningless. Use it to time training, forgetting and evaluation at ML-1M scale.

    Args:
        seed: root seed; the same seed gives the same dataset.
        n_users: number of users (ML-1M: 6,040).
        n_items: number of items (ML-1M: 3,706).
        n_interactions: number of interactions (ML-1M: 1,000,209).
        min_activity: the fewest interactions a user has (ML-1M: 20).

    Returns:
        A :class:`~trustrec.data.dataset.Dataset` named ``"synthetic-ml-1m-shape"``; raw
        ids are ``"1".."n_users"`` and ``"1".."n_items"``.

    Raises:
        ConfigError: a size that is not positive, or ``n_interactions`` outside
            ``[n_users * min_activity, n_users * cap]`` where ``cap`` is 62.5 % of the items.
    """
    for name, value in (("n_users", n_users), ("n_items", n_items),
                        ("n_interactions", n_interactions), ("min_activity", min_activity)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"ml1m_shaped: {name} must be a positive integer, got {value!r}")
    cap = int(np.floor(_MAX_PROFILE_SHARE * n_items))
    if min_activity > cap:
        raise ConfigError(f"ml1m_shaped: min_activity={min_activity} exceeds the largest "
                          f"profile ({cap} = 62.5 % of n_items={n_items})")
    lo, hi = n_users * min_activity, n_users * cap
    if not lo <= n_interactions <= hi:
        raise ConfigError(f"ml1m_shaped: n_interactions={n_interactions} must lie in "
                          f"[{lo}, {hi}] for {n_users} users with {min_activity} to {cap} "
                          "interactions each")

    activity = _activity(rng(seed, "synthetic", "activity"), n_users, n_interactions,
                         min_activity, cap)
    log_weight = rng(seed, "synthetic", "popularity").normal(0.0, _ITEM_SIGMA, n_items)
    items = _draw_items(rng(seed, "synthetic", "items"), activity, log_weight)
    users = np.repeat(np.arange(n_users, dtype=np.int32), activity)

    t_gen = rng(seed, "synthetic", "time")
    t_lo, t_hi = ML1M_TIME_RANGE
    first = t_lo + (t_hi - t_lo) * t_gen.beta(0.6, 4.0, n_users)
    offset = t_gen.beta(0.3, 3.0, n_interactions) * (t_hi - first[users])
    timestamps = (first[users] + offset).astype(np.int64)
    ratings = (t_gen.choice(5, size=n_interactions, p=np.asarray(ML1M_RATING_SHARES)
                            / sum(ML1M_RATING_SHARES)) + 1).astype(np.float32)

    a_gen = rng(seed, "synthetic", "attributes")
    attributes = pd.DataFrame({
        "gender": a_gen.choice(list(ML1M_GENDER_COUNTS), size=n_users,
                               p=_counts_to_probs(list(ML1M_GENDER_COUNTS.values()))),
        "age": a_gen.choice(list(ML1M_AGE_COUNTS), size=n_users,
                            p=_counts_to_probs(list(ML1M_AGE_COUNTS.values()))),
        "occupation": a_gen.choice(np.asarray(ML1M_OCCUPATIONS), size=n_users,
                                   p=_counts_to_probs(ML1M_OCCUPATION_COUNTS)),
    })
    return Dataset(
        name=SYNTHETIC_ML1M_NAME, users=users, items=items, timestamps=timestamps,
        n_users=n_users, n_items=n_items,
        user_ids=np.arange(1, n_users + 1).astype(str),
        item_ids=np.arange(1, n_items + 1).astype(str),
        user_attributes=attributes, ratings=ratings,
    )
