"""The attribute-privacy experiment: measure the attribute leak, remove it, see what it costs.

Axes: dataset × model × method × attribute set × seed. What one cell does:

1. **Data**: the dataset's split for the seed (every cell of a seed sees the same split).
   Labels of the set's attributes come from the dataset's user table
   (:func:`~trustrec.privacy.base.labels_for`).
2. **Threat model**: with ``label_share < 1`` (default 0.5) the method sees the labels of
   a seeded share of the labelled users only (:func:`~trustrec.privacy.base.label_share_users`,
   drawn from the cell's seed, so every method of a seed sees the same users); the others
   are *held out*: their labels reach no method, only the attacker.
3. **Base model** (a shared artefact, stage ``base``): per (dataset, model, seed) the
   undefended model is trained once on the training split, early-stopping on validation,
   and stored under ``<out>/_base/<dataset>/<model>/seed<seed>/`` (``model/`` and
   ``state.json`` with its training seconds and test utility, written last).
4. **Method**: ``"none"`` releases the base model as is; a post-training method
   (``PROTECTORS``) starts from a fresh copy of the stored base model and returns a model
   with a new user table; an in-training defense (``DEFENSES``) trains its own model from
   the same seed. Both get ``label_users`` = the seen share. ``method_seconds`` is the wall
   time of ``protect`` or of the defended ``fit`` (0 for ``"none"``); ``total_seconds``
   adds the base training a post-training method needs.
5. **Audit** (:func:`~trustrec.privacy.attack.audit_model`): every attribute of the set,
   every attacker, in every view (``released``: the released user table; ``fold_in``: users
   re-derived from the released item table and their training items), cross-validated on
   each user set of the spec's ``users`` (``held-out``: the users whose labels the method
   did not see, the headline; ``seen``: those it saw; ``all`` with ``label_share = 1``),
   with the label-permutation null. The cell's seed fixes the folds, so every method of a
   seed is attacked on the same folds.
6. **Utility**: full-ranking NDCG/Recall/... at every cut-off on the test split, and the
   relative NDCG drop against the base model: ``(NDCG_none − NDCG) / NDCG_none``.

Files per cell: ``metrics.json`` (utility, seconds, the threat model's user counts, the
headline ``<attribute>:leakage`` / ``<attribute>:outside_null``, and every audit row as
``attack/<attribute>/<users>/<view>/<attacker>/<metric>``) and ``audit.csv`` (the same
audit as a table) besides the engine's ``config.json`` / ``run.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import time
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field

from trustrec.bench.context import GridContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import (
    Configs,
    Folder,
    GridSpec,
    Names,
    axis_of,
    check_configs,
    dataset_label,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import (
    NonNegativeInt,
    UnitInterval,
    build_config,
    suggest,
    to_dict,
    typed_config,
)
from trustrec.errors import ConfigError, UnknownNameError

#: The method name of the undefended model (the baseline of every relative drop).
NO_DEFENSE = "none"
#: Attackers the default spec runs.
DEFAULT_ATTACKERS = ("lr", "mlp", "gbt")
#: Scored user sets of an attack: the users whose labels the method did not see, those
#: it saw, and every labelled user (in-sample, ``label_share = 1``).
UserSet = Literal["held-out", "seen", "all"]
DEFAULT_USERS = ("held-out", "seen")
#: Feature views of an attack (:data:`~trustrec.privacy.attack.VIEWS`).
View = Literal["released", "fold_in"]
DEFAULT_VIEWS: tuple[str, ...] = typing.get_args(View)
UserSets, Views = axis_of(UserSet), axis_of(View)
#: Columns of a cell's ``audit.csv``.
AUDIT_COLUMNS = ["attribute", "view", "users", "attacker", "metric", "value"]
#: Prefix of the audit rows among a cell's metrics:
#: ``attack/<attribute>/<users>/<view>/<attacker>/<metric>``.
ATTACK_PREFIX = "attack"
MODEL_DIR, AUDIT_CSV = "model", "audit.csv"


# ---------------------------------------------------------------------------- spec
def attribute_sets(value: Any) -> list[str]:
    """Normalise ``attributes`` to comma-joined sets: ``["gender", "gender,age"]``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"attributes must be a non-empty list of attribute sets (e.g. "
                          f"[\"gender\", \"gender,age\"]), got {value!r}")
    out: list[str] = []
    for entry in value:
        parts = entry.split(",") if isinstance(entry, str) else entry
        if not isinstance(parts, (list, tuple)) or not all(isinstance(p, str) for p in parts):
            raise ConfigError(f"attributes: {entry!r} is not an attribute name or a list of "
                              "names")
        names = [p.strip() for p in parts if p.strip()]
        if not names:
            raise ConfigError(f"attributes: {entry!r} names no attribute")
        dup = sorted({a for a in names if names.count(a) > 1})
        if dup:
            raise ConfigError(f"attributes: {dup[0]!r} is given twice in the set {entry!r}")
        bad = [a for a in names if any(c in a for c in "+/:")]
        if bad:
            raise ConfigError(f"attributes: {bad[0]!r} is not an attribute name (separate "
                              "the attributes of a set with commas)")
        key = ",".join(names)
        if key in out:
            raise ConfigError(f"attributes: the set {key!r} is listed twice")
        out.append(key)
    return out


@typed_config
class PrivacySpec(GridSpec):
    """A privacy grid: the shared axes (:class:`~trustrec.bench.grid.GridSpec`) and

    Attributes:
        methods: ``"none"``, post-training methods (``PROTECTORS``) and in-training
            defenses (``DEFENSES``).
        attributes: attribute sets; each entry is one attribute (``"gender"``) or several
            protected jointly (``"gender,age"`` or a list ``["gender", "age"]``); written
            ``gender+age`` in cell ids and folders.
        attackers: attacker names (:data:`~trustrec.privacy.attack.ATTACKERS`).
        folds: stratified cross-validation folds of every attack (>= 2).
        label_share: the held-out threat model: a method sees the labels of this seeded
            share of the labelled users only; the attacker is scored on the others. ``1``:
            the method sees every label and the attack is in-sample (``users = ["all"]``).
        users: which users each attack is cross-validated on, in order, the first being the
            headline: ``"held-out"``, ``"seen"`` or ``"all"`` (the only choice with
            ``label_share = 1``, and not combinable with the other two).
        views: feature views of every attack (:data:`~trustrec.privacy.attack.VIEWS`):
            ``"released"`` and ``"fold_in"``; the headline leakage is the worst over them.
        null_permutations: label permutations of each attack's null interval (0: none;
            else >= 2).
        method_configs: per method name, config values overriding the method's defaults.

    Example TOML::

        kind = "privacy"
        datasets = ["ml-100k"]
        models = ["bpr"]
        methods = ["none", "output-noise", "pot-au-d2d", "lego", "raid"]
        attributes = ["gender", "age", "gender,age"]
        seeds = [0, 1, 2]
        out = "runs/privacy"

        [method_configs.output-noise]
        scale = 0.5
    """

    kind: ClassVar[str] = "privacy"
    out: Folder = "runs/privacy"
    methods: Names = default_list([NO_DEFENSE, "output-noise", "pot-au-d2d", "pot-au-u2u",
                                   "lego", "raid", "adversarial", "hide-table"])
    attributes: Annotated[list[Any], BeforeValidator(attribute_sets)] = default_list(
        ["gender"])
    attackers: Names = default_list(list(DEFAULT_ATTACKERS))
    folds: Annotated[int, Field(ge=2)] = 5
    label_share: UnitInterval = 0.5
    users: UserSets = default_list(list(DEFAULT_USERS))
    views: Views = default_list(list(DEFAULT_VIEWS))
    null_permutations: NonNegativeInt = 20
    method_configs: Configs = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_threat_model()

    def _check_threat_model(self) -> None:
        """``label_share``, ``users`` and ``null_permutations`` together."""
        if "all" in self.users and len(self.users) > 1:
            raise ConfigError('users: "all" scores every labelled user and cannot be '
                              'combined with "held-out" or "seen"')
        if self.label_share == 1 and self.users != ["all"]:
            raise ConfigError('label_share = 1 leaves no held-out user: set users = ["all"] '
                              "(the in-sample audit) or a share below 1")
        if self.label_share < 1 and self.users == ["all"]:
            raise ConfigError('users = ["all"] scores users whose labels the method saw '
                              'together with those it did not; with label_share < 1 use '
                              '"held-out" and/or "seen"')
        if self.null_permutations == 1:
            raise ConfigError("null_permutations must be 0 (no null) or >= 2 (one "
                              "permutation gives no interval), got 1")

    def validate(self, where: str = "privacy spec") -> None:
        """Check every name against its registry and every config against its dataclass.

        Nothing is loaded, fetched or trained (attribute names are checked against each
        dataset when it is loaded, before the first cell runs).

        Raises:
            UnknownNameError: an unknown dataset, model, method or attacker.
            ConfigError: a config key the model or method does not have, a bad value, a
                config for ``"none"``, or a model without a capability the audit or a
                method needs (a released user table for every audit, and each method's
                ``needs``, :mod:`trustrec.models.capabilities`).
        """
        from trustrec.models import MODELS
        from trustrec.models.capabilities import ReleasesUserTable, require

        super().validate(where)
        methods, attackers = privacy_registries()
        for axis, names, known, what in (
                ("methods", self.methods, [NO_DEFENSE, *methods], "privacy method"),
                ("attackers", self.attackers, attackers, "attacker")):
            for name in names:
                if name not in known:
                    raise UnknownNameError(f"{where}: {axis}: unknown {what} {name!r}"
                                           f"{suggest(name, sorted(known))}")
        for m in self.models:
            cls = MODELS.get(m)
            require(cls, ReleasesUserTable, by=f"{where}: models: the attribute audit")
            for name in self.methods:
                if name != NO_DEFENSE:
                    require(cls, *methods[name].needs, by=f"{where}: method {name!r}")
        if NO_DEFENSE in self.method_configs:
            raise ConfigError(f"{where}: method_configs.{NO_DEFENSE}: the undefended model "
                              "has no options (configure it in model_configs)")
        check_configs(self.method_configs, _Methods(methods), "method_configs", where)

    def method_config(self, method: str) -> dict[str, Any]:
        """The full config of ``method`` (``{}`` for ``"none"``)."""
        if method == NO_DEFENSE:
            return {}
        cls = privacy_registries()[0][method]
        return to_dict(build_config(cls.Config, self.method_configs.get(method, {}),
                                    where=f"method_configs.{method}"))

    def cells(self) -> list[PrivacyCell]:
        """The grid's cells in a stable order (see :func:`enumerate_privacy_cells`)."""
        return enumerate_privacy_cells(self)


class _Methods:
    """The privacy methods as a registry (``get`` with "did you mean")."""

    def __init__(self, methods: dict[str, type]) -> None:
        self.methods = methods

    def get(self, name: str) -> type:
        """The method's class; an unknown name is an error with the closest names."""
        if name not in self.methods:
            raise UnknownNameError(f"unknown privacy method {name!r}"
                                   f"{suggest(name, sorted(self.methods))}")
        return self.methods[name]


def privacy_registries() -> tuple[dict[str, type], tuple[str, ...]]:
    """Privacy methods by name and attacker names, with every built-in registered.

    Every module of :mod:`trustrec.privacy` is imported, so a method registers itself by
    being in the package. The methods mapping holds post-training methods
    (``PROTECTORS``) and in-training defenses (``DEFENSES``); ``"none"`` is not in it.
    """
    import trustrec.privacy
    from trustrec.privacy.attack import ATTACKERS
    from trustrec.privacy.base import DEFENSES, PROTECTORS

    for info in pkgutil.iter_modules(trustrec.privacy.__path__):
        importlib.import_module(f"trustrec.privacy.{info.name}")
    methods: dict[str, type] = {n: PROTECTORS.get(n) for n in PROTECTORS}
    methods.update({n: DEFENSES.get(n) for n in DEFENSES})
    return methods, tuple(ATTACKERS.names())


def method_kind(method: str) -> str:
    """``"none"``, ``"post-training"`` (a protector) or ``"in-training"`` (a defense)."""
    from trustrec.privacy.base import DEFENSES, PROTECTORS

    if method == NO_DEFENSE:
        return NO_DEFENSE
    if method not in PROTECTORS and method not in DEFENSES:
        privacy_registries()  # register the built-in methods
    if method in PROTECTORS:
        return "post-training"
    if method in DEFENSES:
        return "in-training"
    raise UnknownNameError(f"unknown privacy method {method!r}")


# ---------------------------------------------------------------------------- cells
@dataclass(frozen=True, order=True)
class PrivacyCell:
    """One point of the privacy grid.

    Attributes:
        dataset: the dataset label (a known name, or a path's last component).
        model: model name.
        method: ``"none"``, a post-training method or an in-training defense.
        attributes: the attribute set, comma-joined (``"gender"``, ``"gender,age"``).
        seed: root seed.
    """

    dataset: str
    model: str
    method: str
    attributes: str
    seed: int

    @property
    def attribute_list(self) -> list[str]:
        """The attributes of the set, in order."""
        return self.attributes.split(",")

    @property
    def id(self) -> str:
        """Stable id, also the cell's folder: ``ml-100k/bpr/lego/gender+age/seed0``."""
        return (f"{self.dataset}/{self.model}/{self.method}/"
                f"{self.attributes.replace(',', '+')}/seed{self.seed}")

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


def enumerate_privacy_cells(spec: PrivacySpec) -> list[PrivacyCell]:
    """The cartesian product of the spec's axes.

    Order: dataset, model, seed, attribute set, then method with ``"none"`` first (it
    is the baseline the others are compared with).
    """
    methods = sorted(spec.methods, key=lambda m: (m != NO_DEFENSE, spec.methods.index(m)))
    return [PrivacyCell(dataset_label(d), m, meth, attrs, seed)
            for d, m, seed, attrs, meth in product(spec.datasets, spec.models, spec.seeds,
                                                   spec.attributes, methods)]


# ---------------------------------------------------------------------------- context
class PrivacyContext(GridContext):
    """Shared, lazily computed state of one privacy run (datasets, splits, base models).

    Attributes (besides :class:`~trustrec.bench.context.GridContext`'s):
        method_configs: per method, the full resolved config (``{}`` for ``"none"``).
        method_kinds: per method, ``"none"``, ``"post-training"`` or ``"in-training"``.
    """

    def __init__(self, spec: PrivacySpec, progress: bool = False) -> None:
        super().__init__(spec, progress)
        self.method_configs = {m: spec.method_config(m) for m in spec.methods}
        self.method_kinds = {m: method_kind(m) for m in spec.methods}

    def check_attributes(self, label: str) -> None:
        """Every attribute of the spec is a usable user attribute of the dataset.

        Raises:
            UnknownNameError: an attribute the dataset does not have (closest named).
            DataFormatError: an attribute with fewer than two classes or bad values.
        """
        from trustrec.privacy.base import attribute_labels

        ds = self.dataset(label)
        have = [str(c) for c in ds.user_attributes.columns]
        for name in dict.fromkeys(a for s in self.spec.attributes for a in s.split(",")):
            if name not in have:
                raise UnknownNameError(
                    f"privacy spec: attributes: dataset {label!r} has no user attribute "
                    f"{name!r}{suggest(name, have) if have else ' (it has none)'}")
            attribute_labels(ds, name)

    def base_config(self, dataset: str, model: str, seed: int) -> dict[str, Any]:
        """Everything the base (undefended) model of (dataset, model, seed) depends on."""
        return {"dataset": dataset, "data": self.data_config(dataset), "model": model,
                "model_config": self.model_configs[model], "seed": seed,
                "ks": list(self.spec.ks)}

    def base_dir(self, dataset: str, model: str, seed: int) -> Path:
        """Folder of a base model: ``_base/<dataset>/<model>/seed<seed>``."""
        return self.out / "_base" / dataset / model / f"seed{seed}"

    def has_base(self, dataset: str, model: str, seed: int) -> bool:
        """Whether the base model is stored and current."""
        return self.is_stored(self.base_dir(dataset, model, seed),
                              self.base_config(dataset, model, seed))

    def base_state(self, dataset: str, model: str, seed: int) -> dict[str, Any]:
        """The base model's record (trained and stored if missing): ``train_seconds`` and
        ``utility`` (the test-split summary)."""
        from trustrec.evaluate.ranking import evaluate_ranking, summarize
        from trustrec.models.base import make_model

        def build(folder: Path) -> dict[str, Any]:
            split = self.split(dataset, seed)
            m = make_model(model, **self.model_configs[model])
            t0 = time.perf_counter()
            m.fit(split.train, split.valid, seed=seed, progress=self.progress)
            seconds = time.perf_counter() - t0
            utility = summarize(evaluate_ranking(m, split.train, split.test, self.spec.ks))
            m.save(folder / MODEL_DIR)
            return {"train_seconds": seconds, "utility": utility}

        return self.stored(self.base_dir(dataset, model, seed),
                           self.base_config(dataset, model, seed), build)

    def base(self, dataset: str, model: str, seed: int) -> tuple[Any, dict[str, Any]]:
        """A fresh copy of the base model (trained and stored if missing) and its record
        (:meth:`base_state`)."""
        from trustrec.models.base import load_model

        state = self.base_state(dataset, model, seed)
        return load_model(self.base_dir(dataset, model, seed) / MODEL_DIR), state


# ---------------------------------------------------------------------------- one cell
def seen_users(ctx: PrivacyContext, cell: PrivacyCell, labels: dict[str, np.ndarray]
               ) -> np.ndarray | None:
    """The users whose labels the cell's method may see (None: every labelled user)."""
    from trustrec.privacy.base import label_share_users

    if ctx.spec.label_share >= 1:
        return None
    return label_share_users(labels, ctx.spec.label_share, cell.seed)


def released_model(ctx: PrivacyContext, cell: PrivacyCell, labels: dict[str, np.ndarray],
                   label_users: np.ndarray | None = None,
                   method_config: dict[str, Any] | None = None
                   ) -> tuple[Any, float, float]:
    """The model a cell releases, its method seconds and the base training seconds.

    ``"none"``: the base model (0 method seconds). Post-training: ``protect`` applied to
    a fresh copy of the base model. In-training: the defense's own ``fit`` (its base
    seconds are its own training).

    Args:
        ctx: the run's context.
        cell: the cell.
        labels: ``{attribute: labels}`` of the training split.
        label_users: the users whose labels the method may see (None: all).
        method_config: the method's config (default: the spec's,
            ``ctx.method_configs[cell.method]``; the tuning script passes candidates).
    """
    from trustrec.privacy.base import make_defense, make_protector

    split = ctx.split(cell.dataset, cell.seed)
    kind = ctx.method_kinds.get(cell.method) or method_kind(cell.method)
    cfg = ctx.method_configs.get(cell.method, {}) if method_config is None else method_config
    if kind == "in-training":
        defense = make_defense(cell.method, **cfg)
        t0 = time.perf_counter()
        model = defense.fit(cell.model, ctx.model_configs[cell.model], split.train,
                            split.valid, labels, seed=cell.seed, progress=False,
                            label_users=label_users)
        seconds = time.perf_counter() - t0
        return model, seconds, seconds
    base, state = ctx.base(cell.dataset, cell.model, cell.seed)
    train_s = float(state["train_seconds"])
    if kind == NO_DEFENSE:
        return base, 0.0, train_s
    protector = make_protector(cell.method, **cfg)
    t0 = time.perf_counter()
    model = protector.protect(base, split.train, labels, seed=cell.seed, progress=False,
                              label_users=label_users)
    return model, time.perf_counter() - t0, train_s


def scored_user_sets(ctx: PrivacyContext, seen: np.ndarray | None
                     ) -> dict[str, np.ndarray | None]:
    """``{user set: users to score}`` for the spec's ``users`` (None: every labelled user)."""
    out: dict[str, np.ndarray | None] = {}
    for name in ctx.spec.users:
        if name == "all" or seen is None:
            out[name] = None
        else:
            out[name] = ~seen if name == "held-out" else seen
    return out


def audit_released(ctx: PrivacyContext, cell: PrivacyCell, model: Any,
                   seen: np.ndarray | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Attack the released model on every attribute of the cell's set.

    Every view of the spec, every user set (``held-out`` users are those outside
    ``seen``), with the spec's attackers, folds and null permutations.

    Returns:
        ``(audit, notes)``: the long table (:data:`AUDIT_COLUMNS`) and, per attribute,
        a note when classes with fewer users than folds were left out of its attack.
    """
    from trustrec.privacy.attack import audit_model

    split = ctx.split(cell.dataset, cell.seed)
    parts, notes = [], {}
    for name, users in scored_user_sets(ctx, seen).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            audit = audit_model(model, split.train, cell.attribute_list,
                                views=tuple(ctx.spec.views), users=users,
                                attackers=tuple(ctx.spec.attackers), folds=ctx.spec.folds,
                                seed=cell.seed,
                                null_permutations=ctx.spec.null_permutations)
        notes.update({f"{a} ({name})": n for a, n in audit.attrs.get("notes", {}).items()})
        parts.append(audit.assign(users=name))
    audit = pd.concat(parts, ignore_index=True).loc[:, AUDIT_COLUMNS]
    audit["value"] = audit["value"].astype(float)
    return audit, notes


def audit_metrics(audit: pd.DataFrame) -> dict[str, float]:
    """The audit as flat metrics: per attribute the headline ``<attribute>:leakage`` (first
    user set, worst attacker over every view, two-sided ``|BA − chance|``) and
    ``<attribute>:outside_null`` (1 when that attacker lies outside its view's null
    interval), then every row as ``attack/<attribute>/<users>/<view>/<attacker>/<metric>``.
    """
    from trustrec.privacy.attack import leakage, outside_null

    out: dict[str, float] = {}
    if audit.empty:
        return out
    head = audit[audit["users"] == audit["users"].iloc[0]]
    for attr, g in head.groupby("attribute", sort=False):
        out[f"{attr}:leakage"] = leakage(g)
        flag = outside_null(g)
        if flag is not None:
            out[f"{attr}:outside_null"] = float(flag)
    names = (ATTACK_PREFIX + "/" + audit["attribute"] + "/" + audit["users"] + "/"
             + audit["view"] + "/" + audit["attacker"] + "/" + audit["metric"])
    out.update(zip(names, audit["value"].astype(float), strict=True))
    return out


def expand_attack_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The results table with the audit rows' names split into ``attribute``, ``view``,
    ``users``, ``attacker`` and ``metric`` columns (empty on the other rows); the inverse
    of :func:`audit_metrics`' naming."""
    out = results.copy()
    attack = out["metric"].str.startswith(ATTACK_PREFIX + "/")
    parts = out.loc[attack, "metric"].str.split("/", n=5, expand=True)
    for col in ("attribute", "view", "users", "attacker"):
        out[col] = ""
    if attack.any():
        out.loc[attack, ["attribute", "users", "view", "attacker", "metric"]] = \
            parts.iloc[:, 1:6].to_numpy()
    return out


def compute_privacy_cell(ctx: PrivacyContext, cell: PrivacyCell,
                         method_config: dict[str, Any] | None = None) -> CellOutput:
    """Compute one cell: metrics (with the flattened audit), ``audit.csv`` and timings.

    Args:
        ctx: the run's context.
        cell: the cell.
        method_config: the method's config (default: the spec's; see
            :func:`released_model`).

    Returns:
        The cell's output: utility at every cut-off, ``ndcg@{k}_rel_drop``, seconds,
        ``label_share``, ``seen_users`` and ``held_out_users`` and the audit
        (:func:`audit_metrics`); the audit table; for ``run.json``, ``"timings"`` and
        ``"audit_notes"`` (classes left out of an attack).
    """
    from trustrec.evaluate.ranking import evaluate_ranking, summarize
    from trustrec.privacy.base import labelled_users, labels_for

    timings: dict[str, float] = {}
    split = ctx.split(cell.dataset, cell.seed)
    labels = labels_for(split.train, cell.attribute_list)
    seen = seen_users(ctx, cell, labels)
    model, method_s, train_s = released_model(ctx, cell, labels, seen, method_config)
    timings["method_seconds"] = method_s

    t0 = time.perf_counter()
    audit, notes = audit_released(ctx, cell, model, seen)
    timings["audit_seconds"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    per_user = evaluate_ranking(model, split.train, split.test, ctx.spec.ks)
    utility = summarize(per_user)
    timings["eval_seconds"] = time.perf_counter() - t1

    base_state = ctx.base_state(cell.dataset, cell.model, cell.seed)
    k = ctx.k
    ref = float(base_state["utility"][f"ndcg@{k}"])
    in_training = (ctx.method_kinds.get(cell.method) or method_kind(cell.method)) \
        == "in-training"
    n_labelled = int(labelled_users(labels).sum())
    n_seen = n_labelled if seen is None else int(seen.sum())
    metrics: dict[str, float] = dict(utility)
    metrics.update({
        f"ndcg@{k}_none": ref,
        f"ndcg@{k}_rel_drop": (ref - utility[f"ndcg@{k}"]) / ref if ref > 0 else float("nan"),
        "method_seconds": method_s,
        "base_train_seconds": float(base_state["train_seconds"]),
        "total_seconds": method_s if in_training else train_s + method_s,
        "audit_seconds": timings["audit_seconds"],
        "n_eval_users": float(len(per_user)),
        "label_share": float(ctx.spec.label_share),
        "seen_users": float(n_seen),
        "held_out_users": float(n_labelled - n_seen),
    })
    metrics.update(audit_metrics(audit))
    return CellOutput(metrics, {AUDIT_CSV: audit},
                      {"timings": timings, "audit_notes": notes})


# ---------------------------------------------------------------------------- the kind
@EXPERIMENTS.register("privacy")
class Privacy(Experiment):
    """The attribute-privacy experiment kind (see the module docstring)."""

    name = "privacy"
    title = "trustrec attribute-privacy benchmark"
    spec_class = PrivacySpec
    axes = ("dataset", "model", "method", "attributes", "seed")
    source_packages = ("data", "evaluate", "models", "train", "privacy")
    report_module = "trustrec.bench.experiments.privacy_report"
    private_dirs = ("_base", "plots")

    def context(self, spec: PrivacySpec, progress: bool = False) -> PrivacyContext:
        """Datasets, splits and base models of the run."""
        return PrivacyContext(spec, progress)

    def check_dataset(self, ctx: PrivacyContext, label: str) -> None:
        """Load the dataset and check that it has every attribute of the spec."""
        ctx.check_attributes(label)

    def cell_from_axes(self, axes: dict[str, Any]) -> PrivacyCell:
        """The cell with these axes."""
        return PrivacyCell(**axes)

    def stages(self, ctx: PrivacyContext, pending: Sequence[PrivacyCell]) -> list[Stage]:
        """The base models the pending cells need (every cell reads its base model's
        utility), skipping what is stored."""
        keys = list(dict.fromkeys((c.dataset, c.model, c.seed) for c in pending))
        return [Stage("base", [list(k) for k in keys if not ctx.has_base(*k)])]

    def dependencies(self, cell: PrivacyCell) -> list[tuple[str, Any]]:
        """Its base model."""
        return [("base", [cell.dataset, cell.model, cell.seed])]

    def describe_key(self, stage: str, key: Any) -> str:
        """``base model ml-100k/bpr/0``."""
        return f"base model {'/'.join(str(v) for v in key)}"

    def run_stage(self, ctx: PrivacyContext, stage: str, key: Any) -> None:
        """Train and store a base model."""
        ctx.base(*key)

    def cell_config(self, ctx: PrivacyContext, cell: PrivacyCell) -> dict[str, Any]:
        """The cell's full resolved config (written to ``config.json``)."""
        spec = ctx.spec
        return {"cell": cell.axes(), "id": cell.id,
                "data": ctx.data_config(cell.dataset),
                "model_config": ctx.model_configs[cell.model],
                "method_kind": ctx.method_kinds[cell.method],
                "method_config": ctx.method_configs[cell.method],
                "attributes": cell.attribute_list,
                "audit": {"attackers": list(spec.attackers), "folds": spec.folds,
                          "label_share": spec.label_share, "users": list(spec.users),
                          "views": list(spec.views),
                          "null_permutations": spec.null_permutations},
                "ks": list(spec.ks), "headline_k": ctx.k,
                "baseline": {"method": NO_DEFENSE,
                             "fingerprint": ctx.artefact_fingerprint(ctx.base_config(
                                 cell.dataset, cell.model, cell.seed))}}

    def compute_cell(self, ctx: PrivacyContext, cell: PrivacyCell) -> CellOutput:
        """See :func:`compute_privacy_cell`."""
        return compute_privacy_cell(ctx, cell)

    def is_legacy(self, columns: list[str]) -> bool:
        """The privacy grid's own columns before experiment kinds: the axes, then
        ``attribute, view, users, attacker, metric, value``."""
        return columns == [*self.axes, "attribute", "view", "users", "attacker", "metric",
                           "value"]

    def from_legacy(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Audit rows renamed ``attack/<attribute>/<users>/<view>/<attacker>/<metric>``."""
        frame = frame.copy()
        attack = frame["attribute"].astype(str) != ""
        frame.loc[attack, "metric"] = (
            ATTACK_PREFIX + "/" + frame.loc[attack, "attribute"] + "/"
            + frame.loc[attack, "users"] + "/" + frame.loc[attack, "view"] + "/"
            + frame.loc[attack, "attacker"] + "/" + frame.loc[attack, "metric"])
        frame = frame.drop(columns=["attribute", "view", "users", "attacker"])
        return frame

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """Headline leakage per attribute, utility, seconds."""
        g = functools.partial(metric_text, metrics)

        attrs = [name.split(":")[0] for name in metrics if name.endswith(":leakage")]
        leak = ", ".join(f"{a} leakage {g(f'{a}:leakage', '.3f')}"
                         + (" (outside null)" if metrics.get(f"{a}:outside_null") == 1.0
                            else "") for a in attrs)
        drop = metrics.get(f"ndcg@{k}_rel_drop")
        drop_txt = ("–" if drop is None or not np.isfinite(drop)
                    else f"{0.0 - 100 * drop + 0.0:+.1f} %")
        return (f"{leak}; ndcg@{k} {g(f'ndcg@{k}', '.4f')} ({drop_txt}), "
                f"method {g('method_seconds', '.2f')} s")
