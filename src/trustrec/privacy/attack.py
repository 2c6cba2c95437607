"""Attribute-inference audit: can an attacker read a user attribute off the user embeddings?

The attack protocol of the attribute-unlearning literature (PoT-AU, LEGO, RAID; Ganhör et
al. 2022), made uniform: a post-hoc attacker is trained on the *released* user table
(:func:`trustrec.privacy.base.user_table`) to predict a sensitive attribute, and scored by
stratified K-fold cross-validation over users.

* **Attackers** (:data:`ATTACKERS`, scikit-learn, on features standardised per fold):
  ``lr`` logistic regression, ``mlp`` a one-hidden-layer MLP (100 units, ``alpha=1`` as in
  the PoT-AU code), ``gbt`` histogram gradient-boosted trees (50 rounds of depth 4, like
  PoT-AU's XGBoost). Every attack also reports the ``majority`` baseline (always predicts
  the training fold's most frequent class: balanced accuracy ``1/C``, AUC ``0.5``).
* **Metrics** per attacker, the mean over the folds: ``balanced_accuracy``, ``macro_f1``,
  ``auc`` (binary ROC-AUC; one-vs-rest macro average for more classes) and ``chance``,
  the chance level of balanced accuracy, ``1/C``.

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
    * The attacks run single-threaded (``threadpoolctl``): a few hundred users by ~64
      features is too small for BLAS/OpenMP threads to pay off, and on a busy machine
      idle-spinning threads made them ten times slower.
    * Folds are shuffled with a seed derived from the root seed
      (:func:`trustrec.seeding.child_seed`), so the same seed gives the same table.
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

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError, UnsupportedRequestError
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.base import attribute_labels, user_table
from trustrec.registry import Registry
from trustrec.seeding import child_seed

#: Metrics reported for every attacker, in this order.
METRICS: tuple[str, ...] = ("balanced_accuracy", "macro_f1", "auc", "chance")
#: The always-reported baseline attacker.
MAJORITY = "majority"

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
def _check_inputs(emb: np.ndarray, labels: np.ndarray, attackers: Sequence[str],
                  folds: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
    if isinstance(attackers, str):
        attackers = [a for a in attackers.split(",") if a.strip()]
    names = [str(a).strip() for a in attackers]
    if not names:
        raise ConfigError(f"no attacker given (available: {', '.join(ATTACKERS.names())})")
    for a in names:
        ATTACKERS.get(a)  # unknown name -> UnknownNameError with a suggestion
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ConfigError(f"attacker {dup[0]!r} is given twice")
    return emb.astype(np.float64), labels.astype(np.int64), names


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
                    seed: int) -> None:
    """Fill ``per_fold[attacker]`` with each fold's metrics."""
    for fold, (tr, te) in enumerate(splitter.split(x, y)):
        scaler = StandardScaler().fit(x[tr])
        x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
        weight = compute_sample_weight("balanced", y[tr])
        for name, factory in factories.items():
            clf = factory(child_seed(seed, "audit", name, fold) % 2**31)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(converge|Maximum iter).*")
                clf.fit(x_tr, y[tr], sample_weight=weight)
            proba = clf.predict_proba(x_te)
            pred = clf.classes_[np.argmax(proba, axis=1)]
            per_fold[name].append(_fold_metrics(y[te], pred, proba, n_classes))


def audit_embeddings(emb: np.ndarray, labels: np.ndarray, *,
                     attackers: Sequence[str] = ("lr", "mlp", "gbt"), folds: int = 5,
                     seed: int = 0) -> pd.DataFrame:
    """Cross-validated attribute-inference attacks on a user table.

    Users with label ``-1`` (unknown) are left out, and so are classes with fewer users
    than ``folds`` (with a warning; see the module's choices). Each fold's training users
    are standardised (scaler fit on the training fold only) and class-weighted; the
    metrics are computed on the held-out fold and averaged over the folds.

    Args:
        emb: ``(n_users, d)`` user embeddings.
        labels: ``(n_users,)`` integer classes, ``-1`` for unknown.
        attackers: names in :data:`ATTACKERS` (the ``majority`` baseline is always added).
        folds: number of stratified folds (>= 2).
        seed: root seed (fold shuffling and the attackers' own randomness).

    Returns:
        Long table with columns ``attacker, metric, value``: for each attacker, then
        ``majority``, the metrics of :data:`METRICS`. ``attrs`` holds ``n_users``,
        ``n_classes``, ``class_counts`` and ``dropped_classes``.

    Raises:
        DataFormatError: bad shapes, non-integer labels, non-finite embeddings, or fewer
            than two classes with at least ``folds`` users.
        ConfigError: ``folds`` < 2, no attacker, or an attacker given twice.
        UnknownNameError: an attacker that is not registered.
    """
    emb, labels, names = _check_inputs(emb, labels, attackers, folds)
    keep, dropped = _usable(labels, folds)
    x = emb[keep]
    classes, y = np.unique(labels[keep], return_inverse=True)
    n_classes = len(classes)
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True,
                               random_state=child_seed(seed, "audit", "folds") % 2**31)
    factories: dict[str, Callable[[int], Any]] = {a: ATTACKERS.get(a) for a in names}
    factories[MAJORITY] = lambda s: DummyClassifier(strategy="most_frequent")
    per_fold: dict[str, list[dict[str, float]]] = {a: [] for a in factories}
    with threadpool_limits(limits=1):
        _cross_validate(x, y, splitter, factories, per_fold, n_classes, seed)
    rows = []
    for name, values in per_fold.items():
        mean = pd.DataFrame(values).mean()
        rows += [(name, m, float(mean[m])) for m in METRICS[:-1]]
        rows.append((name, "chance", 1.0 / n_classes))
    out = pd.DataFrame(rows, columns=["attacker", "metric", "value"])
    out.attrs.update({"n_users": int(keep.sum()), "n_classes": int(n_classes),
                      "class_counts": {int(c): int(n) for c, n in
                                       zip(classes, np.bincount(y), strict=True)},
                      "dropped_classes": dropped})
    return out


def audit_model(model: EmbeddingRecommender, ds: Dataset, attributes: Sequence[str] | str,
                **kw: Any) -> pd.DataFrame:
    """Audit a fitted model's released user table for several user attributes.

    Args:
        model: a fitted model with a known released table (see
            :func:`trustrec.privacy.base.user_table`).
        ds: a dataset in the model's user-id space with ``user_attributes`` (e.g. the
            training split).
        attributes: attribute names (or ``"gender,age"``), see
            :func:`trustrec.privacy.base.attribute_labels`.
        **kw: passed to :func:`audit_embeddings` (``attackers``, ``folds``, ``seed``).

    Returns:
        Long table with columns ``attribute, attacker, metric, value``. ``attrs["notes"]``
        maps an attribute to a note when some of its classes were dropped (too few users),
        and ``attrs["classes"]`` maps each attribute to its class names.
    """
    if isinstance(attributes, str):
        attributes = [a.strip() for a in attributes.split(",") if a.strip()]
    names = [str(a).strip() for a in attributes]
    if not names:
        raise ConfigError("no attribute given (e.g. gender,age)")
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ConfigError(f"attribute {dup[0]!r} is given twice")
    table = user_table(model)
    if ds.n_users != len(table):
        raise DataFormatError(f"the dataset has {ds.n_users} users but the model's user "
                              f"table has {len(table)} rows (not the model's id space)")
    labelled = {a: attribute_labels(ds, a) for a in names}  # all checked before any attack
    parts, notes, class_names = [], {}, {}
    for a, (labels, classes) in labelled.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = audit_embeddings(table, labels, **kw)
        dropped = res.attrs["dropped_classes"]
        if dropped:
            notes[a] = ("classes with fewer users than folds left out: "
                        + ", ".join(f"{classes[c]} ({n})" for c, n in dropped.items()))
            warnings.warn(f"{a}: {notes[a]}", UserWarning, stacklevel=2)
        class_names[a] = classes
        parts.append(res.assign(attribute=a)[["attribute", "attacker", "metric", "value"]])
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update({"notes": notes, "classes": class_names})
    return out


def audit_wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (attribute,) attacker and one column per metric, in :data:`METRICS` order.

    Args:
        table: a result of :func:`audit_embeddings` or :func:`audit_model`.
    """
    keys = [c for c in ("attribute", "attacker") if c in table.columns]
    order = {k: list(dict.fromkeys(table[k])) for k in keys}
    wide = table.pivot_table(index=keys, columns="metric", values="value", sort=False)
    wide = wide.reindex(columns=[m for m in METRICS if m in wide.columns])
    wide.columns.name = None
    wide = wide.reset_index()
    for k in keys:
        wide[k] = pd.Categorical(wide[k], categories=order[k], ordered=True)
    return wide.sort_values(keys).reset_index(drop=True).astype({k: str for k in keys})


def _balanced_accuracy_rows(table: pd.DataFrame, attackers: Sequence[str] | None
                            ) -> pd.DataFrame:
    rows = table[(table["metric"] == "balanced_accuracy") & (table["attacker"] != MAJORITY)]
    if attackers is not None:
        rows = rows[rows["attacker"].isin(list(attackers))]
    if rows.empty or "attribute" in rows.columns and rows["attribute"].nunique() > 1:
        raise DataFormatError("expected the balanced_accuracy rows of real attackers for "
                              "exactly one attribute")
    return rows


def summary_balanced_accuracy(table: pd.DataFrame, attackers: Sequence[str] | None = None
                              ) -> float:
    """The highest balanced accuracy over the real attackers of a one-attribute audit.

    Args:
        table: a result of :func:`audit_embeddings` (or one attribute of
            :func:`audit_model`).
        attackers: restrict to these attackers (default: all but ``majority``).
    """
    return float(_balanced_accuracy_rows(table, attackers)["value"].max())


def leakage(table: pd.DataFrame, attackers: Sequence[str] | None = None) -> float:
    """The largest distance of a real attacker's balanced accuracy from chance, ``|BA − 1/C|``.

    Below-chance accuracy counts as leakage too: a cross-validated attacker that is
    systematically wrong has learned the attribute's signature with the sign flipped
    (its flipped answers would be as far above chance). A defense that equalises the
    groups *exactly* over the audited users produces it: each training fold's groups
    then differ in the direction opposite to its held-out users.

    Args:
        table: a result of :func:`audit_embeddings` (or one attribute of
            :func:`audit_model`).
        attackers: restrict to these attackers (default: all but ``majority``).
    """
    rows = _balanced_accuracy_rows(table, attackers)
    chance = table.loc[table["metric"] == "chance", "value"]
    return float((rows["value"] - float(chance.iloc[0])).abs().max())


def audit_model_dir(model_dir: str | Path, attributes: Sequence[str] | str,
                    **kw: Any) -> pd.DataFrame:
    """Audit the model of a model directory (``trustrec train``) with :func:`audit_model`.

    The user attributes come from the directory's stored training data (the model's id
    space).

    Args:
        model_dir: a model directory holding a single model (e.g. method ``retrain``).
        attributes: attribute names, e.g. ``"gender,age"``.
        **kw: passed to :func:`audit_embeddings`.

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
