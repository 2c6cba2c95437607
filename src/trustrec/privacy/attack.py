"""Attribute-inference audit: can an attacker read a user attribute off a model's release?

The attack protocol of the attribute-unlearning literature (PoT-AU, LEGO, RAID; Ganhör et
al. 2022), made uniform and made hard to flatter: a post-hoc attacker is trained on user
features to predict a sensitive attribute, and scored by stratified K-fold
cross-validation over users.

* **Attackers** (:data:`ATTACKERS`, scikit-learn, on features standardised per fold):
  ``lr`` logistic regression, ``mlp`` a one-hidden-layer MLP (100 units, ``alpha=1`` as in
  the PoT-AU code), ``gbt`` histogram gradient-boosted trees (50 rounds of depth 4, like
  PoT-AU's XGBoost). Every attack also reports the ``majority`` baseline (always predicts
  the training fold's most frequent class: balanced accuracy ``1/C``, AUC ``0.5``).
* **Metrics** per attacker (:data:`METRICS`), the mean over the folds:
  ``balanced_accuracy``, ``macro_f1``, ``auc`` (binary ROC-AUC; one-vs-rest macro average
  for more classes), ``chance`` (``1/C``), and the **two-sided distances from chance**
  ``bacc_distance = |balanced_accuracy − chance|`` and ``auc_distance = |auc − 0.5|``. A
  cross-validated attacker that is systematically *below* chance has learned the
  attribute with the sign flipped (flipping its answers reads the attribute as far above
  chance), so it counts as leakage: :func:`leakage` is the worst attacker's
  ``bacc_distance``, never the best balanced accuracy.
* **Label-permutation null** (``null_permutations > 0``, pseudo-attacker ``permuted``,
  :data:`NULL_METRICS`): the labels of the scored users are permuted (seeded draws, class
  sizes kept) and the whole cross-validated attack is rerun with one attacker
  (``null_attacker``, default ``lr``), giving the balanced accuracy an attacker reaches when
  the features carry *no* information about the attribute. Its 95 % interval is
  ``mean ± 1.96 sd`` of the permuted runs (a normal approximation: with 20 permutations the
  empirical 2.5 / 97.5 % quantiles would be the extreme draws). The pseudo-attacker
  ``worst`` (:data:`WORST_METRICS`) holds the worst real attacker's two distances and
  ``outside_null``: 1 when its balanced accuracy lies outside the null interval.
* **Views** (:func:`audit_model`): ``released``, the user table the model scores with
  (:func:`trustrec.privacy.base.user_table`), and ``fold_in``, user vectors re-derived
  from the released *item* table and each user's training items
  (:func:`trustrec.evaluate.foldin.fold_in`). A method that only edits the user table
  leaves the item table that was trained on the users' data; the fold-in view shows what
  it still gives away. The headline (:func:`leakage` of a multi-view audit) is the worst
  over the views.
* **Scored users** (``users`` of :func:`audit_model`): the attack is cross-validated on
  these users only (the others' labels are treated as unknown). The held-out threat model
  scores the users whose labels a defense did *not* see
  (:func:`trustrec.privacy.base.label_share_users`).

Choices:
    * Classes are balanced by **class-weighted training** (every training user weighs
      ``n / (C * n_c)``, scikit-learn's "balanced" sample weights) rather than by
      downsampling the majority class as the PoT-AU code does: no user is thrown away
      (occupation has classes of 7 users on ML-100K) and the result does not depend on
      which users a downsampling kept. The test folds are not rebalanced; balanced
      accuracy and macro-F1 weigh the classes equally anyway.
    * A class with fewer users than folds cannot appear in every test fold; its users are
      **dropped** with a :class:`UserWarning`, and the drop is recorded in the result's
      ``attrs["dropped_classes"]`` (``{class label: users}``) so reports can show it.
    * The distances are those of the **cross-validated means** (``|mean − chance|``), not
      means of per-fold distances, which would be biased away from chance by fold noise.
    * **One null attacker, not one per attacker**: rerunning every attacker 20 times
      multiplies an audit's cost by 20 (the boosted trees take ~2 s per 5-fold run on
      ML-100K). Measured on ML-100K gender (BPR-MF table, 943 users, 20 permutations), the
      null standard deviation of balanced accuracy is 0.024 for ``lr``, 0.014 for ``mlp``
      and 0.017 for ``gbt``: logistic regression, which turns noise into the most varied
      predictions, has the widest null, so its interval is conservative for the other two
      (a real attacker outside it is outside its own null too). The flag compares the
      *worst* of several attackers with a one-attacker 95 % interval, so on a table that
      carries no information it fires more often than 5 % of the time (at most about 14 %
      for three independent attackers; less, as their errors are correlated); read it with
      the distances, not instead of them.
    * The attacks run single-threaded (``threadpoolctl``): a few hundred users by ~64
      features is too small for BLAS/OpenMP threads to pay off, and on a busy machine
      idle-spinning threads made them ten times slower.
    * Folds are shuffled with a seed derived from the root seed
      (:func:`trustrec.seeding.child_seed`), so the same seed gives the same table; the
      permutations of the null are drawn from ``rng(seed, "audit", "null")``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from trustrec.config import name_list
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError, UnsupportedRequestError
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.base import attribute_labels, mask_labels, user_table
from trustrec.registry import Registry
from trustrec.seeding import child_seed, rng

#: Metrics reported for every attacker (and the majority baseline), in this order.
METRICS: tuple[str, ...] = ("balanced_accuracy", "macro_f1", "auc", "chance",
                            "bacc_distance", "auc_distance")
#: The always-reported baseline attacker.
MAJORITY = "majority"
#: Pseudo-attacker holding the label-permutation null (with ``null_permutations > 0``):
#: the null attacker rerun on permuted labels. (Not named ``null``: CSV readers take that
#: for a missing value.)
NULL = "permuted"
#: Metrics of :data:`NULL`: mean and standard deviation of the null attacker's balanced
#: accuracy over the permutations, the 95 % interval ``mean ± 1.96 sd`` and the number
#: of permutations.
NULL_METRICS: tuple[str, ...] = ("bacc_mean", "bacc_sd", "bacc_low", "bacc_high",
                                 "permutations")
#: Pseudo-attacker summarising the real attackers: the worst two distances from chance and
#: ``outside_null`` (1 / 0: the worst attacker's balanced accuracy lies outside the null
#: interval; NaN without a null).
WORST = "worst"
WORST_METRICS: tuple[str, ...] = ("bacc_distance", "auc_distance", "outside_null")
#: Rows that are not real attackers.
PSEUDO_ATTACKERS: tuple[str, ...] = (MAJORITY, NULL, WORST)
#: Feature views of :func:`audit_model`: the released user table, and users folded back
#: in from the released item table.
VIEWS: tuple[str, ...] = ("released", "fold_in")
#: The 95 % two-sided normal quantile.
_Z95 = 1.959963984540054

#: ``name -> factory(seed) -> unfitted scikit-learn classifier`` (``fit`` takes
#: ``sample_weight``; ``predict_proba`` columns follow the sorted training classes).
ATTACKERS: Registry[Callable[[int], Any]] = Registry("attacker")


@ATTACKERS.register("lr")
def logistic_regression(seed: int) -> LogisticRegression:
    """L2-regularised logistic regression (multinomial for more than two classes)."""
    del seed  # lbfgs is deterministic
    return LogisticRegression(C=1.0, max_iter=2000)


@ATTACKERS.register("mlp")
def mlp(seed: int) -> MLPClassifier:
    """MLP with one hidden layer of 100 ReLU units, Adam, L2 ``alpha=1`` (PoT-AU's)."""
    return MLPClassifier(hidden_layer_sizes=(100,), alpha=1.0, learning_rate_init=0.01,
                         max_iter=300, random_state=seed)


@ATTACKERS.register("gbt")
def gradient_boosted_trees(seed: int) -> HistGradientBoostingClassifier:
    """Histogram gradient-boosted trees: 50 rounds, depth 4, learning rate 0.2, 32 bins.

    32 feature bins instead of 255: with sample weights scikit-learn's histogram building
    is several times slower per bin, and ~750 training users do not fill 255 bins anyway.
    """
    return HistGradientBoostingClassifier(max_iter=50, max_depth=4, learning_rate=0.2,
                                          max_bins=32, early_stopping=False,
                                          random_state=seed)


# ---------------------------------------------------------------------------- checks
def _names(attackers: Sequence[str] | str) -> list[str]:
    return name_list(attackers, "attacker", f" (available: {', '.join(ATTACKERS.names())})",
                     ATTACKERS.get)  # an unknown name: UnknownNameError with a suggestion


def _check_inputs(emb: np.ndarray, labels: np.ndarray, attackers: Sequence[str],
                  folds: int, null_permutations: int, null_attacker: str
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    emb = np.asarray(emb)
    labels = np.asarray(labels)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataFormatError(f"embeddings must be a non-empty (n_users, d) array, got "
                              f"shape {emb.shape}")
    if labels.ndim != 1 or len(labels) != len(emb):
        raise DataFormatError(f"labels must be one integer per embedding row ({len(emb)}), "
                              f"got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < -1).any():
        raise DataFormatError(f"labels must be integers >= -1 (-1 = unknown), got "
                              f"{labels.dtype} from {labels.min()}")
    if not np.all(np.isfinite(emb)):
        raise DataFormatError("embeddings contain NaN or infinite values")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if (isinstance(null_permutations, bool)
            or not isinstance(null_permutations, (int, np.integer))
            or null_permutations < 0 or null_permutations == 1):
        raise ConfigError(f"null_permutations must be 0 (no null) or an integer >= 2, got "
                          f"{null_permutations!r}")
    ATTACKERS.get(null_attacker)
    return emb.astype(np.float64), labels.astype(np.int64), _names(attackers)


def _usable(labels: np.ndarray, folds: int) -> tuple[np.ndarray, dict[int, int]]:
    """Mask of users kept (known label, class with >= ``folds`` users) and dropped classes."""
    known = labels >= 0
    classes, counts = np.unique(labels[known], return_counts=True)
    small = {int(c): int(n) for c, n in zip(classes, counts, strict=True) if n < folds}
    keep = known & ~np.isin(labels, list(small))
    if small:
        warnings.warn(f"attribute audit: classes {sorted(small)} have fewer users than the "
                      f"{folds} folds ({small}); their {sum(small.values())} users are "
                      "left out", UserWarning, stacklevel=3)
    n_left = len(np.unique(labels[keep]))
    if n_left < 2:
        raise DataFormatError(f"an attack needs at least two classes with >= {folds} users "
                              f"each; {n_left} left (classes with users: "
                              f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))})")
    return keep, small


# ---------------------------------------------------------------------------- metrics
def _fold_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, n_classes: int
                  ) -> dict[str, float]:
    labels = np.arange(n_classes)
    if n_classes == 2:
        auc = roc_auc_score(y, proba[:, 1])
    else:
        auc = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
    return {"balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=labels, average="macro",
                                       zero_division=0)),
            "auc": float(auc)}


def _cross_validate(x: np.ndarray, y: np.ndarray, splitter: StratifiedKFold,
                    factories: Mapping[str, Callable[[int], Any]],
                    per_fold: dict[str, list[dict[str, float]]], n_classes: int,
                    seed: int, *tag: object) -> None:
    """Fill ``per_fold[attacker]`` with each fold's metrics (``tag`` names the run in the
    attackers' seeds)."""
    for fold, (tr, te) in enumerate(splitter.split(x, y)):
        scaler = StandardScaler().fit(x[tr])
        x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
        weight = compute_sample_weight("balanced", y[tr])
        for name, factory in factories.items():
            clf = factory(child_seed(seed, "audit", *tag, name, fold) % 2**31)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(converge|Maximum iter).*")
                clf.fit(x_tr, y[tr], sample_weight=weight)
            proba = clf.predict_proba(x_te)
            pred = clf.classes_[np.argmax(proba, axis=1)]
            per_fold[name].append(_fold_metrics(y[te], pred, proba, n_classes))


def permutation_null(x: np.ndarray, y: np.ndarray, splitter: StratifiedKFold,
                     attacker: str, permutations: int, seed: int) -> np.ndarray:
    """Cross-validated balanced accuracy of ``attacker`` on ``permutations`` label shuffles.

    Args:
        x: ``(n, d)`` features of the scored users.
        y: ``(n,)`` their classes ``0..C-1``.
        splitter: the audit's fold splitter (folds are re-stratified on each permutation).
        attacker: a name in :data:`ATTACKERS`.
        permutations: number of seeded shuffles.
        seed: root seed (``rng(seed, "audit", "null")`` draws the shuffles).

    Returns:
        ``(permutations,)`` balanced accuracies under "no information".
    """
    gen = rng(seed, "audit", "null")
    n_classes = int(y.max()) + 1
    factory = {attacker: ATTACKERS.get(attacker)}
    out = np.empty(permutations)
    for p in range(permutations):
        per_fold: dict[str, list[dict[str, float]]] = {attacker: []}
        _cross_validate(x, gen.permutation(y), splitter, factory, per_fold, n_classes, seed,
                        "null", p)
        out[p] = np.mean([f["balanced_accuracy"] for f in per_fold[attacker]])
    return out


def audit_embeddings(emb: np.ndarray, labels: np.ndarray, *,
                     attackers: Sequence[str] = ("lr", "mlp", "gbt"), folds: int = 5,
                     seed: int = 0, null_permutations: int = 0,
                     null_attacker: str = "lr") -> pd.DataFrame:
    """Cross-validated attribute-inference attacks on a table of user features.

    Users with label ``-1`` (unknown) are left out (so a held-out audit passes the labels
    of the scored users only), and so are classes with fewer users than ``folds`` (with a
    warning; see the module's choices). Each fold's training users are standardised
    (scaler fit on the training fold only) and class-weighted; the metrics are computed
    on the held-out fold and averaged over the folds.

    Args:
        emb: ``(n_users, d)`` user features (embeddings).
        labels: ``(n_users,)`` integer classes, ``-1`` for unknown.
        attackers: names in :data:`ATTACKERS` (the ``majority`` baseline is always added).
        folds: number of stratified folds (>= 2).
        seed: root seed (fold shuffling, the attackers' own randomness, the permutations).
        null_permutations: label permutations of the null (0: no null; else >= 2, see the
            module docstring).
        null_attacker: the attacker rerun on the permuted labels.

    Returns:
        Long table with columns ``attacker, metric, value``: for each attacker, then
        ``majority``, the metrics of :data:`METRICS`; then ``permuted`` (:data:`NULL_METRICS`,
        only with a null) and ``worst`` (:data:`WORST_METRICS`). ``attrs`` holds
        ``n_users``, ``n_classes``, ``class_counts``, ``dropped_classes``,
        ``null_attacker`` and ``null_values`` (the permuted runs' balanced accuracies).

    Raises:
        DataFormatError: bad shapes, non-integer labels, non-finite embeddings, or fewer
            than two classes with at least ``folds`` users.
        ConfigError: ``folds`` < 2, no attacker, an attacker given twice, or a bad
            ``null_permutations``.
        UnknownNameError: an attacker (or null attacker) that is not registered.
    """
    emb, labels, names = _check_inputs(emb, labels, attackers, folds, null_permutations,
                                       null_attacker)
    keep, dropped = _usable(labels, folds)
    x = emb[keep]
    classes, y = np.unique(labels[keep], return_inverse=True)
    n_classes = len(classes)
    chance = 1.0 / n_classes
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True,
                               random_state=child_seed(seed, "audit", "folds") % 2**31)
    factories: dict[str, Callable[[int], Any]] = {a: ATTACKERS.get(a) for a in names}
    factories[MAJORITY] = lambda s: DummyClassifier(strategy="most_frequent")
    per_fold: dict[str, list[dict[str, float]]] = {a: [] for a in factories}
    with threadpool_limits(limits=1):
        _cross_validate(x, y, splitter, factories, per_fold, n_classes, seed)
        null = (permutation_null(x, y, splitter, null_attacker, int(null_permutations), seed)
                if null_permutations else np.empty(0))
    rows = []
    means = {}
    for name, values in per_fold.items():
        mean = pd.DataFrame(values).mean()
        means[name] = mean
        rows += [(name, m, float(mean[m])) for m in METRICS[:3]]
        rows += [(name, "chance", chance),
                 (name, "bacc_distance", abs(float(mean["balanced_accuracy"]) - chance)),
                 (name, "auc_distance", abs(float(mean["auc"]) - 0.5))]
    low = high = float("nan")
    if len(null):
        centre, sd = float(null.mean()), float(null.std(ddof=1))
        low, high = centre - _Z95 * sd, centre + _Z95 * sd
        rows += [(NULL, "bacc_mean", centre), (NULL, "bacc_sd", sd), (NULL, "bacc_low", low),
                 (NULL, "bacc_high", high), (NULL, "permutations", float(len(null)))]
    worst = max(names, key=lambda a: abs(float(means[a]["balanced_accuracy"]) - chance))
    worst_ba = float(means[worst]["balanced_accuracy"])
    outside = (float(not low <= worst_ba <= high) if len(null) else float("nan"))
    rows += [(WORST, "bacc_distance", abs(worst_ba - chance)),
             (WORST, "auc_distance", max(abs(float(means[a]["auc"]) - 0.5) for a in names)),
             (WORST, "outside_null", outside)]
    out = pd.DataFrame(rows, columns=["attacker", "metric", "value"])
    out.attrs.update({"n_users": int(keep.sum()), "n_classes": int(n_classes),
                      "class_counts": {int(c): int(n) for c, n in
                                       zip(classes, np.bincount(y), strict=True)},
                      "dropped_classes": dropped, "worst_attacker": worst,
                      "null_attacker": null_attacker if len(null) else None,
                      "null_values": null.tolist()})
    return out


# ---------------------------------------------------------------------------- views
def view_features(model: EmbeddingRecommender, ds: Dataset, view: str) -> np.ndarray:
    """The user features an attacker reads in one view of a fitted model.

    Args:
        model: a fitted model.
        ds: its training data (the fold-in view reads the users' training items).
        view: ``"released"`` (the released user table,
            :func:`trustrec.privacy.base.user_table`) or ``"fold_in"`` (every user
            re-derived from the released item table ``model.item_embeddings()`` and its
            rows of ``ds`` by :func:`trustrec.evaluate.foldin.fold_in`, the ALS user step
            with its defaults).

    Raises:
        ConfigError: an unknown view.
    """
    if view == "released":
        return user_table(model)
    if view == "fold_in":
        from trustrec.evaluate.foldin import fold_in

        return fold_in(model.item_embeddings(), ds.users, ds.items, ds.n_users)
    raise ConfigError(f"unknown audit view {view!r} (views: {', '.join(VIEWS)})")


def _views(views: Sequence[str] | str) -> list[str]:
    def known(v: str) -> None:
        if v not in VIEWS:
            raise ConfigError(f"unknown audit view {v!r} (views: {', '.join(VIEWS)})")

    return name_list(views, "audit view", f" (views: {', '.join(VIEWS)})", known)


def audit_model(model: EmbeddingRecommender, ds: Dataset, attributes: Sequence[str] | str,
                *, views: Sequence[str] | str = VIEWS, users: np.ndarray | None = None,
                **kw: Any) -> pd.DataFrame:
    """Audit a fitted model for several user attributes, in one or more views.

    Args:
        model: a fitted model; the released view needs its released user table
            (:func:`trustrec.privacy.base.user_table`), the fold-in view only its item
            table.
        ds: a dataset in the model's user-id space with ``user_attributes`` (the training
            split: its interactions are what the fold-in view folds users in from).
        attributes: attribute names (or ``"gender,age"``), see
            :func:`trustrec.privacy.base.attribute_labels`.
        views: names in :data:`VIEWS` (default both; see :func:`view_features`).
        users: the users the attack is cross-validated on (indices or a boolean mask;
            default every labelled user). The held-out threat model passes the users whose
            labels the defense did not see.
        **kw: passed to :func:`audit_embeddings` (``attackers``, ``folds``, ``seed``,
            ``null_permutations``, ``null_attacker``).

    Returns:
        Long table with columns ``attribute, view, attacker, metric, value``.
        ``attrs["notes"]`` maps an attribute to a note when some of its classes were
        dropped (too few users), ``attrs["classes"]`` maps each attribute to its class
        names, ``attrs["n_users"]`` to the number of users scored.
    """
    names = name_list(attributes, "attribute", " (e.g. gender,age)")
    view_names = _views(views)
    if (ds.n_users, ds.n_items) != (model.n_users_, model.n_items_):
        raise DataFormatError(f"the dataset has {ds.n_users} users and {ds.n_items} items "
                              f"but the model was fit on {model.n_users_} x "
                              f"{model.n_items_} (not the model's id space)")
    labelled = {a: attribute_labels(ds, a) for a in names}  # all checked before any attack
    scored = {a: mask_labels(lab, users) for a, (lab, _) in labelled.items()}
    features = {v: view_features(model, ds, v) for v in view_names}
    parts, notes, class_names, counts = [], {}, {}, {}
    for a, (_, classes) in labelled.items():
        for v in view_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                res = audit_embeddings(features[v], scored[a], **kw)
            parts.append(res.assign(attribute=a, view=v)[
                ["attribute", "view", "attacker", "metric", "value"]])
        dropped = res.attrs["dropped_classes"]
        if dropped:
            notes[a] = ("classes with fewer users than folds left out: "
                        + ", ".join(f"{classes[c]} ({n})" for c, n in dropped.items()))
            warnings.warn(f"{a}: {notes[a]}", UserWarning, stacklevel=2)
        class_names[a] = classes
        counts[a] = res.attrs["n_users"]
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update({"notes": notes, "classes": class_names, "n_users": counts})
    return out


def audit_wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (attribute, view,) attacker and one column per metric of :data:`METRICS`.

    The pseudo-attackers ``permuted`` and ``worst`` are left out (see :func:`leakage`,
    :func:`null_interval`).

    Args:
        table: a result of :func:`audit_embeddings` or :func:`audit_model`.
    """
    table = table[~table["attacker"].isin([NULL, WORST])]
    keys = [c for c in ("attribute", "view", "attacker") if c in table.columns]
    order = {k: list(dict.fromkeys(table[k])) for k in keys}
    wide = table.pivot_table(index=keys, columns="metric", values="value", sort=False)
    wide = wide.reindex(columns=[m for m in METRICS if m in wide.columns])
    wide.columns.name = None
    wide = wide.reset_index()
    for k in keys:
        wide[k] = pd.Categorical(wide[k], categories=order[k], ordered=True)
    return wide.sort_values(keys).reset_index(drop=True).astype({k: str for k in keys})


# ---------------------------------------------------------------------------- summaries
def _one_attribute(table: pd.DataFrame) -> None:
    if "attribute" in table.columns and table["attribute"].nunique() > 1:
        raise DataFormatError("expected the audit of exactly one attribute (select it first)")


def _balanced_accuracy_rows(table: pd.DataFrame, attackers: Sequence[str] | None
                            ) -> pd.DataFrame:
    _one_attribute(table)
    rows = table[(table["metric"] == "balanced_accuracy")
                 & ~table["attacker"].isin(PSEUDO_ATTACKERS)]
    if attackers is not None:
        rows = rows[rows["attacker"].isin(list(attackers))]
    if rows.empty:
        raise DataFormatError("expected the balanced_accuracy rows of real attackers for "
                              "exactly one attribute")
    return rows


def summary_balanced_accuracy(table: pd.DataFrame, attackers: Sequence[str] | None = None
                              ) -> float:
    """The highest balanced accuracy over the real attackers (and views) of an audit.

    Not a privacy figure on its own: an attacker below chance leaks too (see
    :func:`leakage`, which is what reports use).

    Args:
        table: a result of :func:`audit_embeddings` (or one attribute of
            :func:`audit_model`).
        attackers: restrict to these attackers (default: every real attacker).
    """
    return float(_balanced_accuracy_rows(table, attackers)["value"].max())


def leakage(table: pd.DataFrame, attackers: Sequence[str] | None = None,
            metric: str = "balanced_accuracy") -> float:
    """The worst attacker's two-sided distance from chance, over every view in ``table``.

    ``max |BA − 1/C|`` over the real attackers (and over the views of a multi-view
    audit, so a post-training method is judged by the worse of its released table and
    its fold-in). Below-chance accuracy counts as leakage: a cross-validated attacker
    that is systematically wrong has learned the attribute's signature with the sign
    flipped (its flipped answers would be as far above chance). A defense that
    equalises the groups *exactly* over the audited users produces it: each training
    fold's groups then differ in the direction opposite to its held-out users.

    Args:
        table: a result of :func:`audit_embeddings`, or one attribute of
            :func:`audit_model` (any number of views).
        attackers: restrict to these attackers (default: every real attacker).
        metric: ``"balanced_accuracy"`` (distance from ``1/C``) or ``"auc"`` (distance
            from 0.5).

    Raises:
        DataFormatError: several attributes, or no row of a matching real attacker.
        ConfigError: another metric.
    """
    if metric == "balanced_accuracy":
        rows = _balanced_accuracy_rows(table, attackers)
        chance = table.loc[table["metric"] == "chance", "value"]
        return float((rows["value"] - float(chance.iloc[0])).abs().max())
    if metric == "auc":
        _one_attribute(table)
        rows = table[(table["metric"] == "auc") & ~table["attacker"].isin(PSEUDO_ATTACKERS)]
        if attackers is not None:
            rows = rows[rows["attacker"].isin(list(attackers))]
        if rows.empty:
            raise DataFormatError("expected the auc rows of real attackers")
        return float((rows["value"] - 0.5).abs().max())
    raise ConfigError(f"leakage metric must be 'balanced_accuracy' or 'auc', got {metric!r}")


def null_interval(table: pd.DataFrame) -> tuple[float, float] | None:
    """The 95 % label-permutation interval of balanced accuracy of a one-view audit.

    Returns:
        ``(low, high)``, or None when the audit ran without a null.

    Raises:
        DataFormatError: several attributes or views.
    """
    _one_attribute(table)
    if "view" in table.columns and table["view"].nunique() > 1:
        raise DataFormatError("expected the audit of exactly one view (select it first)")
    rows = table[table["attacker"] == NULL].set_index("metric")["value"]
    if "bacc_low" not in rows:
        return None
    return float(rows["bacc_low"]), float(rows["bacc_high"])


def outside_null(table: pd.DataFrame) -> bool | None:
    """Whether the worst attacker of any view lies outside that view's null interval.

    Returns:
        True / False, or None when the audit ran without a null.
    """
    _one_attribute(table)
    rows = table[(table["attacker"] == WORST) & (table["metric"] == "outside_null")]
    flags = rows["value"].dropna()
    if flags.empty:
        return None
    return bool((flags > 0).any())


def audit_model_dir(model_dir: str | Path, attributes: Sequence[str] | str,
                    **kw: Any) -> pd.DataFrame:
    """Audit the model of a model directory (``trustrec train``) with :func:`audit_model`.

    The user attributes and the interactions of the fold-in view come from the
    directory's stored training data (the model's id space).

    Args:
        model_dir: a model directory holding a single model (e.g. method ``retrain``).
        attributes: attribute names, e.g. ``"gender,age"``.
        **kw: passed to :func:`audit_model` (``views``, ``users``) and
            :func:`audit_embeddings`.

    Raises:
        FileNotFoundError: no such model directory.
        UnsupportedRequestError: the directory holds several models (e.g. SISA's shards),
            which have no single released user table.
    """
    from trustrec.workflows.model_dir import load_model_dir

    md = load_model_dir(model_dir)
    models = md.unlearner.persistent_models()
    if len(models) != 1:
        raise UnsupportedRequestError(
            f"{model_dir} holds {len(models)} models (method {md.meta.get('method')!r}); "
            "an audit needs a single released user table (train with --method retrain)")
    model = next(iter(models.values()))
    return audit_model(model, md.unlearner.train_, attributes, **kw)
