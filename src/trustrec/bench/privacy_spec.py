"""The privacy benchmark grid: a :class:`PrivacySpec` and the cells it expands to.

A privacy spec names the axes of the grid (datasets × models × methods × attribute sets ×
seeds) and what every cell shares (attackers, folds, split, cut-offs, per-model and
per-method configs). It lives in the same kind of TOML/YAML file as the unlearning grid,
told apart by ``kind = "privacy"`` at the top level. Every name is checked against the
registries before any work starts; a typo names the key and the closest valid name.

Methods are ``"none"`` (the undefended model), post-training methods
(:data:`~trustrec.privacy.base.PROTECTORS`: they change the released user table of the
trained base model) and in-training defenses (:data:`~trustrec.privacy.base.DEFENSES`:
they train their own model). An attribute set is one entry of ``attributes``, e.g.
``"gender"`` or ``"gender,age"`` (protected jointly); it is written ``gender+age`` in
cell ids and folders.

Example TOML::

    kind = "privacy"
    datasets = ["ml-100k"]
    models = ["bpr"]
    methods = ["none", "output-noise", "pot-au-d2d", "lego", "raid"]
    attributes = ["gender", "age", "gender,age"]
    seeds = [0, 1, 2]
    attackers = ["lr", "mlp", "gbt"]
    out = "runs/privacy"

    [method_configs.output-noise]
    scale = 0.5
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from trustrec.bench.spec import (
    build_spec,
    check_datasets,
    dataset_label,
    normalise_common,
    num_list,
    str_list,
)
from trustrec.config import build_config, suggest, to_dict
from trustrec.errors import ConfigError, UnknownNameError

#: The method name of the undefended model (the baseline of every relative drop).
NO_DEFENSE = "none"
#: The value of ``kind`` that marks a privacy spec file.
PRIVACY_KIND = "privacy"
#: Attackers the default spec runs.
DEFAULT_ATTACKERS = ("lr", "mlp", "gbt")
#: Scored user sets of an attack: the users whose labels the method did not see, those
#: it saw, and every labelled user (in-sample, ``label_share = 1``).
USER_SETS = ("held-out", "seen", "all")
DEFAULT_USERS = ("held-out", "seen")
DEFAULT_VIEWS = ("released", "fold_in")


def _default(values: list[Any]) -> Any:
    return field(default_factory=lambda: list(values))


@dataclass
class PrivacySpec:
    """A privacy benchmark grid and the settings its cells share.

    Attributes:
        datasets: known dataset names (``"ml-100k"``) or paths to dataset folders/files;
            each must have a user-attribute table.
        models: registered model names with a released user table (``USER_TABLE``).
        methods: ``"none"``, post-training methods (``PROTECTORS``) and in-training
            defenses (``DEFENSES``).
        attributes: attribute sets; each entry is one attribute (``"gender"``) or several
            protected jointly (``"gender,age"`` or a list ``["gender", "age"]``).
        seeds: root seeds; each drives the split, training, the method and the attack
            folds.
        attackers: attacker names of :func:`~trustrec.privacy.attack.audit_embeddings`.
        folds: stratified cross-validation folds of every attack (>= 2).
        label_share: the held-out threat model: a method sees the labels of this seeded
            share of the labelled users only (:func:`~trustrec.privacy.base.label_share_users`,
            drawn from the cell's seed); the attacker is scored on the others. ``1``: the
            method sees every label and the attack is in-sample (``users = ["all"]``).
        users: which users each attack is cross-validated on, in order, the first being the
            headline: ``"held-out"`` (labels the method did not see), ``"seen"`` (labels it
            saw) or ``"all"`` (every labelled user; the only choice with ``label_share =
            1``, and not combinable with the other two).
        views: feature views of every attack (:data:`~trustrec.privacy.attack.VIEWS`):
            ``"released"`` (the released user table) and ``"fold_in"`` (users re-derived
            from the released item table); the headline leakage is the worst over them.
        null_permutations: label permutations of each attack's null interval (0: none;
            else >= 2).
        split_ratios: train / validation / test shares of the per-user random split.
        ks: ranking cut-offs; the headline cut-off is 20 when present, else the largest.
        model_configs: per model name, config values overriding the model's defaults.
        method_configs: per method name, config values overriding the method's defaults.
        out: output folder (one sub-folder per cell, plus ``results.csv`` and reports).
        data_dir: cache folder for known datasets (default ``$TRUSTREC_DATA`` or
            ``~/.cache/trustrec``).
        kind: always ``"privacy"`` (what marks the file as a privacy spec).
    """

    datasets: list[str] = _default(["ml-100k"])
    models: list[str] = _default(["bpr"])
    methods: list[str] = _default([NO_DEFENSE, "output-noise", "pot-au-d2d", "pot-au-u2u",
                                   "lego", "raid", "adversarial", "hide-table"])
    attributes: list[Any] = _default(["gender"])
    seeds: list[int] = _default([0])
    attackers: list[str] = _default(list(DEFAULT_ATTACKERS))
    folds: int = 5
    label_share: float = 0.5
    users: list[str] = _default(list(DEFAULT_USERS))
    views: list[str] = _default(list(DEFAULT_VIEWS))
    null_permutations: int = 20
    split_ratios: list[float] = _default([0.8, 0.1, 0.1])
    ks: list[int] = _default([10, 20])
    model_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str = "runs/privacy"
    data_dir: str | None = None
    kind: str = PRIVACY_KIND

    def __post_init__(self) -> None:
        if self.kind != PRIVACY_KIND:
            raise ConfigError(f"kind must be {PRIVACY_KIND!r} for a privacy spec, got "
                              f"{self.kind!r}")
        for name in ("datasets", "models", "methods", "attackers"):
            setattr(self, name, str_list(name, getattr(self, name)))
        self.attributes = _attribute_sets(self.attributes)
        self.seeds = num_list("seeds", self.seeds, int)
        self.ks = num_list("ks", self.ks, int)
        self.split_ratios = num_list("split_ratios", self.split_ratios, float)
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"seeds: {min(self.seeds)} is negative")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"ks: cut-off {min(self.ks)} must be >= 1")
        sr = self.split_ratios
        if len(sr) != 3 or min(sr) < 0 or min(sr[0], sr[2]) <= 0 or abs(sum(sr) - 1) > 1e-9:
            raise ConfigError(f"split_ratios must be three non-negative shares (train, "
                              f"validation, test) summing to 1, with train and test > 0, "
                              f"got {sr}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"folds must be an integer >= 2, got {self.folds!r}")
        self._check_threat_model()
        normalise_common(self)

    def _check_threat_model(self) -> None:
        """``label_share``, ``users``, ``views`` and ``null_permutations``."""
        share = self.label_share
        if (isinstance(share, bool) or not isinstance(share, (int, float))
                or not 0 < share <= 1):
            raise ConfigError(f"label_share must be a number in (0, 1], got {share!r}")
        self.label_share = float(share)
        self.users = str_list("users", self.users)
        self.views = str_list("views", self.views)
        for name in self.users:
            if name not in USER_SETS:
                raise ConfigError(f"users: unknown user set {name!r}"
                                  f"{suggest(name, list(USER_SETS))} (choose from "
                                  f"{', '.join(USER_SETS)})")
        for name in self.views:
            if name not in DEFAULT_VIEWS:
                raise ConfigError(f"views: unknown view {name!r}"
                                  f"{suggest(name, list(DEFAULT_VIEWS))} (choose from "
                                  f"{', '.join(DEFAULT_VIEWS)})")
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
        n = self.null_permutations
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n == 1:
            raise ConfigError(f"null_permutations must be 0 or an integer >= 2, got {n!r}")

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "privacy spec") -> None:
        """Check every name against its registry and every config against its dataclass.

        Nothing is loaded, fetched or trained (attribute names are checked against each
        dataset when it is loaded, before the first cell runs).

        Raises:
            UnknownNameError: an unknown dataset, model, method or attacker, or a model
                with no released user table.
            ConfigError: a config key the model or method does not have, a bad value, or
                a config for ``"none"``.
        """
        from trustrec.privacy.base import USER_TABLE

        models, methods, attackers = privacy_registries()
        check_datasets(self.datasets, where)
        for m in self.models:
            try:
                models.get(m)
            except UnknownNameError as exc:
                raise UnknownNameError(f"{where}: models: {exc}") from None
            if m not in USER_TABLE:
                raise UnknownNameError(f"{where}: models: model {m!r} has no released user "
                                       f"table to attack (supported: "
                                       f"{', '.join(sorted(USER_TABLE))})")
        for axis, names, known, what in (
                ("methods", self.methods, [NO_DEFENSE, *methods], "privacy method"),
                ("attackers", self.attackers, attackers, "attacker")):
            for name in names:
                if name not in known:
                    raise UnknownNameError(f"{where}: {axis}: unknown {what} {name!r}"
                                           f"{suggest(name, sorted(known))}")
        for name, values in self.model_configs.items():
            try:
                cls = models.get(name)
            except UnknownNameError as exc:
                raise UnknownNameError(f"{where}: model_configs: {exc}") from None
            build_config(cls.Config, values, where=f"{where}: model_configs.{name}")
        for name, values in self.method_configs.items():
            if name == NO_DEFENSE:
                raise ConfigError(f"{where}: method_configs.{name}: the undefended model "
                                  "has no options (configure it in model_configs)")
            if name not in methods:
                raise UnknownNameError(f"{where}: method_configs: unknown privacy method "
                                       f"{name!r}{suggest(name, sorted(methods))}")
            build_config(methods[name].Config, values, where=f"{where}: method_configs.{name}")

    # ------------------------------------------------------------------ resolved configs
    def model_config(self, model: str) -> dict[str, Any]:
        """The full config of ``model`` (defaults overridden by :attr:`model_configs`)."""
        cls = privacy_registries()[0].get(model)
        return to_dict(build_config(cls.Config, self.model_configs.get(model, {}),
                                    where=f"model_configs.{model}"))

    def method_config(self, method: str) -> dict[str, Any]:
        """The full config of ``method`` (``{}`` for ``"none"``)."""
        if method == NO_DEFENSE:
            return {}
        cls = privacy_registries()[1][method]
        return to_dict(build_config(cls.Config, self.method_configs.get(method, {}),
                                    where=f"method_configs.{method}"))

    def cells(self) -> list[PrivacyCell]:
        """The grid's cells in a stable order (see :func:`enumerate_privacy_cells`)."""
        return enumerate_privacy_cells(self)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the spec (attribute sets as ``"a,b"`` strings)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line per axis, e.g. ``methods: none, lego``."""
        return "\n".join(f"{axis}: {', '.join(str(v) for v in getattr(self, axis))}"
                         for axis in ("datasets", "models", "methods", "attributes", "seeds",
                                      "attackers", "users", "views"))


# ---------------------------------------------------------------------------- registries
def privacy_registries() -> tuple[Any, dict[str, type], tuple[str, ...]]:
    """Models, privacy methods by name, and attacker names, with every built-in registered.

    Every module of :mod:`trustrec.privacy` is imported, so a method registers itself by
    being in the package. The methods mapping holds post-training methods
    (``PROTECTORS``) and in-training defenses (``DEFENSES``); ``"none"`` is not in it.
    """
    import trustrec.models
    import trustrec.privacy
    from trustrec.privacy.base import DEFENSES, PROTECTORS

    for info in pkgutil.iter_modules(trustrec.privacy.__path__):
        importlib.import_module(f"trustrec.privacy.{info.name}")
    methods: dict[str, type] = {n: PROTECTORS.get(n) for n in PROTECTORS}
    methods.update({n: DEFENSES.get(n) for n in DEFENSES})
    return trustrec.models.MODELS, methods, attacker_names()


def attacker_names() -> tuple[str, ...]:
    """Attacker names :func:`~trustrec.privacy.attack.audit_embeddings` accepts."""
    attack = importlib.import_module("trustrec.privacy.attack")
    known = getattr(attack, "ATTACKERS", DEFAULT_ATTACKERS)
    return tuple(known.names() if hasattr(known, "names") else known)


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
        """The five axis values as a dict (the first columns of ``results.csv``)."""
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


def _attribute_sets(value: Any) -> list[str]:
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
        bad = [a for a in names if "+" in a or "/" in a]
        if bad:
            raise ConfigError(f"attributes: {bad[0]!r} is not an attribute name (separate "
                              "the attributes of a set with commas)")
        key = ",".join(names)
        if key in out:
            raise ConfigError(f"attributes: the set {key!r} is listed twice")
        out.append(key)
    return out


# ---------------------------------------------------------------------------- loading
def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.toml`` or ``.yaml``/``.yml`` spec file into a mapping.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: unknown extension, a syntax error, or no table at the top level.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spec file not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            values: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    else:
        raise ConfigError(f"{path}: unknown spec format {suffix!r}; use .toml, .yaml or .yml")
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path}: expected a table of options at the top level, got "
                          f"{type(values).__name__}")
    return dict(values)


def privacy_spec_from_mapping(values: Mapping[str, Any] | None, where: str = "privacy spec",
                              validate: bool = True) -> PrivacySpec:
    """Build a privacy spec from a mapping; unknown keys are a ConfigError.

    Args:
        values: top-level keys of :class:`PrivacySpec` (``kind`` may be given);
            missing keys keep their defaults.
        where: context for error messages (e.g. the file name).
        validate: also check names against the registries (:meth:`PrivacySpec.validate`).
    """
    return build_spec(PrivacySpec, values, where, validate)


def load_privacy_spec(path: str | Path, validate: bool = True) -> PrivacySpec:
    """Load a privacy spec from a TOML/YAML file (``kind = "privacy"`` may be given).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: bad syntax, an unknown key (with the closest valid key), a bad value,
            or a file whose ``kind`` is not ``"privacy"``.
        UnknownNameError: an unknown dataset, model, method or attacker.
    """
    return privacy_spec_from_mapping(read_spec_file(path), where=str(path), validate=validate)


#: Command-line options of ``trustrec bench`` that do not apply to a privacy grid, and why.
_UNLEARNING_ONLY = {
    "selections": "its axes are datasets, models, methods, attributes and seeds",
    "ratios": "its axes are datasets, models, methods, attributes and seeds",
    "engine": "it runs its cells one after another in this process",
    "workers": "it runs its cells one after another in this process",
}


def load_privacy_spec_if_privacy(path: str | Path | None,
                                 overrides: Mapping[str, Any] | None = None
                                 ) -> PrivacySpec | None:
    """The validated privacy spec in ``path`` when the file says ``kind = "privacy"``.

    Lets ``trustrec bench --spec FILE`` run either grid: it returns None for no file or a
    file of another kind (the unlearning grid), else the spec with ``overrides`` applied.

    Args:
        path: the spec file, or None.
        overrides: command-line values replacing the file's (None values are ignored;
            strings such as ``"0,1,2"`` are comma lists; paths become strings).

    Raises:
        ConfigError: an override that is not a privacy option (``selections``,
            ``ratios``, ``engine``, ``workers``), or anything :func:`load_privacy_spec`
            raises.
    """
    if path is None:
        return None
    values = read_spec_file(path)
    if values.get("kind", "unlearning") != PRIVACY_KIND:
        return None
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, why in _UNLEARNING_ONLY.items():
        if key in given:
            raise ConfigError(f"--{key} does not apply to the privacy grid in {path} "
                              f"({why})")
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in given.items()})
    where = f"{path} with command-line options" if given else str(path)
    return privacy_spec_from_mapping(values, where=where)
