"""The benchmark grid: a :class:`BenchSpec` and the cells it expands to.

A spec names the axes of the grid (datasets × models × methods × grains × selections ×
ratios × seeds) and the settings every cell shares (split ratios, cut-offs, per-model and
per-method configs, where data lives). It is loaded from TOML or YAML (by file extension),
built from a mapping with :func:`spec_from_mapping`, or built in code. Every name is checked
against the registries before any work starts, so a typo fails in a second, not after an
hour.

Example TOML::

    datasets = ["ml-100k"]
    models = ["bpr", "wmf"]
    methods = ["retrain", "sisa"]
    grains = ["user"]
    selections = ["core", "edge", "random"]
    ratios = [0.05, 0.1]
    seeds = [0, 1, 2]
    out = "runs/bench"

    [model_configs.bpr]
    epochs = 50

    [method_configs.sisa]
    n_shards = 5
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from trustrec.bench.engine import ENGINES
from trustrec.config import build_config, suggest, to_dict
from trustrec.errors import ConfigError, UnknownNameError

#: The methods' reference: completeness and speed-up are measured against it.
REFERENCE_METHOD = "retrain"


def _default(values: list[Any]) -> Any:
    return field(default_factory=lambda: list(values))


@dataclass
class BenchSpec:
    """A benchmark grid and the settings its cells share.

    Attributes:
        datasets: known dataset names (``"ml-100k"``) or paths to dataset folders/files.
        models: registered model names (``trustrec.models.MODELS``).
        methods: registered unlearning methods (``trustrec.unlearn.base.UNLEARNERS``).
        grains: what a forget request names (:data:`GRAINS`): ``"user"`` (whole users, the
            default), ``"interaction"`` ((user, item) pairs) or ``"item"`` (whole items).
        selections: forget-set selections (``core``, ``edge``, ``random``); their meaning
            per grain is :data:`GRAIN_SELECTIONS`.
        ratios: shares of the grain's units (users, training pairs, items) to forget, each
            in (0, 1).
        seeds: root seeds; each drives the split, training and the random selection.
        out: output folder (one sub-folder per cell, plus ``results.csv`` and reports).
        split_ratios: train / validation / test shares of the per-user random split.
        ks: ranking cut-offs; the report's headline cut-off is 20 when present, else the
            largest.
        model_configs: per model name, config values overriding the model's defaults.
        method_configs: per method name, config values overriding the method's defaults.
        data_dir: cache folder for known datasets (default ``$TRUSTREC_DATA`` or
            ``~/.cache/trustrec``).
        workers: number of tasks run at once (default: the machine's CPU count); 1 runs
            every cell in this process, one after the other.
        engine: where parallel tasks run: ``"local"`` (a pool of local processes, the
            default) or ``"ray"`` (Ray tasks; needs ``pip install 'trustrec[ray]'``). See
            :mod:`trustrec.bench.engine`. Results do not depend on it, nor on ``workers``.
        protocol: ``"trustrec"`` (default) or ``"cure4rec"`` (:mod:`trustrec.bench.protocol`:
            its data filter, 80/20 split, untruncated NDCG and signed A-IGF; the split
            ratios are then the protocol's).
    """

    datasets: list[str] = _default(["ml-100k"])
    models: list[str] = _default(["bpr", "wmf", "lightgcn"])
    methods: list[str] = _default(["retrain", "sisa"])
    grains: list[str] = _default(["user"])
    selections: list[str] = _default(["core", "edge", "random"])
    ratios: list[float] = _default([0.05])
    seeds: list[int] = _default([0])
    out: str = "runs/bench"
    split_ratios: list[float] = _default([0.8, 0.1, 0.1])
    ks: list[int] = _default([10, 20])
    model_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_dir: str | None = None
    workers: int | None = None
    engine: str = "local"
    protocol: str = "trustrec"

    def __post_init__(self) -> None:
        from trustrec.bench.protocol import get_protocol

        forced = get_protocol(self.protocol).split_ratios
        if forced is not None:
            self.split_ratios = list(forced)
        for name in ("datasets", "models", "methods", "grains", "selections"):
            setattr(self, name, str_list(name, getattr(self, name)))
        _check_grains(self.grains, self.selections)
        self.ratios = num_list("ratios", self.ratios, float)
        self.seeds = num_list("seeds", self.seeds, int)
        self.ks = num_list("ks", self.ks, int)
        self.split_ratios = num_list("split_ratios", self.split_ratios, float)
        for r in self.ratios:
            if not 0.0 < r < 1.0:
                raise ConfigError(f"ratios: {r!r} is not in (0, 1) (e.g. 0.05 for 5 %)")
        for s in self.seeds:
            if s < 0:
                raise ConfigError(f"seeds: {s} is negative")
        for k in self.ks:
            if k < 1:
                raise ConfigError(f"ks: cut-off {k} must be >= 1")
        sr = self.split_ratios
        if len(sr) != 3 or min(sr) < 0 or sr[0] <= 0 or abs(sum(sr) - 1) > 1e-9:
            raise ConfigError(f"split_ratios must be three non-negative shares (train, "
                              f"validation, test) summing to 1, got {sr}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(
                self.workers, int) or self.workers < 1):
            raise ConfigError(f"workers must be a positive integer (or unset for every "
                              f"CPU), got {self.workers!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine: unknown engine {self.engine!r}"
                              f"{suggest(str(self.engine), ENGINES.names())}")
        normalise_common(self)

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "bench spec") -> None:
        """Check every name against its registry and every config against its dataclass.

        Nothing is loaded, fetched or trained. Raises on the first problem, naming the axis
        and the closest valid name.

        Raises:
            UnknownNameError: an unknown dataset, model, method or selection.
            ConfigError: a config key that the model or method does not have, a bad
                value, or a method that does not support one of the grains.
        """
        from trustrec.data.selection import SELECTIONS
        MODELS, UNLEARNERS = _registries()

        check_datasets(self.datasets, where)
        for axis, registry in (("models", MODELS), ("methods", UNLEARNERS),
                               ("selections", SELECTIONS)):
            for name in getattr(self, axis):
                try:
                    registry.get(name)
                except UnknownNameError as exc:
                    raise UnknownNameError(f"{where}: {axis}: {exc}") from None
        if REFERENCE_METHOD not in UNLEARNERS:
            raise UnknownNameError(f"{where}: the reference method {REFERENCE_METHOD!r} is "
                                   "not registered")
        for method in dict.fromkeys([*self.methods, REFERENCE_METHOD]):
            supports = UNLEARNERS.get(method).supports
            missing = [g for g in self.grains if g not in supports]
            if missing:
                raise ConfigError(
                    f"{where}: method {method!r} cannot forget {missing[0]}s (it supports "
                    f"{', '.join(sorted(supports)) or 'nothing'}); remove it from methods or "
                    f"{missing[0]!r} from grains")
        for axis, registry, configs in (("model_configs", MODELS, self.model_configs),
                                        ("method_configs", UNLEARNERS, self.method_configs)):
            for name, values in configs.items():
                try:
                    cls = registry.get(name)
                except UnknownNameError as exc:
                    raise UnknownNameError(f"{where}: {axis}: {exc}") from None
                build_config(cls.Config, values, where=f"{where}: {axis}.{name}")

    # ------------------------------------------------------------------ resolved configs
    def model_config(self, model: str) -> dict[str, Any]:
        """The full config of ``model`` (defaults overridden by :attr:`model_configs`)."""
        cls = _registries()[0].get(model)
        return to_dict(build_config(cls.Config, self.model_configs.get(model, {}),
                                    where=f"model_configs.{model}"))

    def method_config(self, method: str) -> dict[str, Any]:
        """The full config of ``method`` (defaults overridden by :attr:`method_configs`)."""
        cls = _registries()[1].get(method)
        return to_dict(build_config(cls.Config, self.method_configs.get(method, {}),
                                    where=f"method_configs.{method}"))

    def cells(self) -> list[Cell]:
        """The grid's cells in a stable order (see :func:`enumerate_cells`)."""
        return enumerate_cells(self)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the spec."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line per axis, e.g. ``models: bpr, wmf``."""
        parts = [f"datasets: {', '.join(self.datasets)}",
                 f"models: {', '.join(self.models)}",
                 f"methods: {', '.join(self.methods)}",
                 f"grains: {', '.join(self.grains)}",
                 f"selections: {', '.join(self.selections)}",
                 f"ratios: {', '.join(format(r, 'g') for r in self.ratios)}",
                 f"seeds: {', '.join(str(s) for s in self.seeds)}"]
        return "\n".join(parts)


def _registries() -> tuple[Any, Any]:
    """The model and unlearning-method registries, with every built-in entry registered."""
    import trustrec.models
    import trustrec.unlearn  # noqa: F401  (its __init__ registers the methods)
    from trustrec.unlearn.base import UNLEARNERS

    return trustrec.models.MODELS, UNLEARNERS


# ---------------------------------------------------------------------------- grains
#: Request grains: what a forget request names.
GRAINS = ("user", "interaction", "item")

#: Per grain, the selections it accepts and what each means there. ``user``: CURE4Rec's
#: core / edge / random users (most / least active, seeded draw; any selection registered
#: in :data:`trustrec.data.selection.SELECTIONS`). ``item``: the most popular / least
#: popular / random items (``select_forget_items``' ``popular`` / ``unpopular`` /
#: ``random``), popularity being the item's activity. ``interaction``: a seeded draw of
#: distinct (user, item) training pairs only; single interactions have no activity ranking
#: that would make core / edge meaningful, so those are a ConfigError.
GRAIN_SELECTIONS: dict[str, dict[str, str] | None] = {
    "user": None,  # the user selections registry decides
    "interaction": {"random": "random"},
    "item": {"core": "popular", "edge": "unpopular", "random": "random"},
}


def _check_grains(grains: list[str], selections: list[str]) -> None:
    for g in grains:
        if g not in GRAINS:
            raise ConfigError(f"grains: unknown grain {g!r}{suggest(g, GRAINS)}; use "
                              f"{', '.join(GRAINS)}")
        allowed = GRAIN_SELECTIONS[g]
        bad = [s for s in selections if allowed is not None and s not in allowed]
        if bad:
            raise ConfigError(
                f"selections: {bad[0]!r} is not defined for grain {g!r} (it takes "
                f"{', '.join(allowed)}); run grain {g!r} in a spec with selections = "
                f"{sorted(allowed)!r}")


# ---------------------------------------------------------------------------- cells
@dataclass(frozen=True, order=True)
class Cell:
    """One point of the grid.

    Attributes:
        dataset: the dataset label (a known name, or a path's last component).
        model: model name.
        method: unlearning method name.
        selection: forget-set selection (its meaning per grain: :data:`GRAIN_SELECTIONS`).
        ratio: share of the grain's units forgotten (users, training pairs or items).
        seed: root seed.
        grain: what the request names: ``"user"``, ``"interaction"`` or ``"item"``.
    """

    dataset: str
    model: str
    method: str
    selection: str
    ratio: float
    seed: int
    grain: str = "user"

    @property
    def id(self) -> str:
        """Stable id, also the cell's folder: ``ml-100k/bpr/sisa/core/p0.05/seed0``.

        A grain other than ``user`` is a folder level before the selection
        (``ml-100k/bpr/sisa/item/core/p0.05/seed0``), so user-grain ids are unchanged.
        """
        grain = "" if self.grain == "user" else f"{self.grain}/"
        return (f"{self.dataset}/{self.model}/{self.method}/{grain}{self.selection}/"
                f"p{format(self.ratio, 'g')}/seed{self.seed}")

    @property
    def group(self) -> tuple[str, str, str, float, int, str]:
        """Cells sharing a group share the forget set and the retrained reference."""
        return (self.dataset, self.model, self.selection, self.ratio, self.seed, self.grain)

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict (the first columns of ``results.csv``)."""
        return dataclasses.asdict(self)


def dataset_label(name_or_path: str) -> str:
    """The name a dataset goes by in cell ids: a known name, or a path's last component."""
    from trustrec.data.fetch import CATALOG

    if name_or_path.lower() in CATALOG:
        return name_or_path.lower()
    p = Path(name_or_path).expanduser()
    label = p.stem if p.is_file() else p.name
    return label or str(name_or_path)


def enumerate_cells(spec: BenchSpec) -> list[Cell]:
    """The cartesian product of the spec's axes.

    Order: dataset, model, seed, ratio, grain, selection, then method with the reference
    method (``retrain``) first, so that a group's reference is produced before the cells
    that compare against it.
    """
    methods = sorted(spec.methods, key=lambda m: (m != REFERENCE_METHOD,
                                                  spec.methods.index(m)))
    out = []
    for d, m, seed, r, g, sel, meth in product(spec.datasets, spec.models, spec.seeds,
                                               spec.ratios, spec.grains, spec.selections,
                                               methods):
        out.append(Cell(dataset_label(d), m, meth, sel, r, seed, g))
    return out


def fingerprint(obj: Any) -> str:
    """Short sha256 of a JSON-ready object (canonical key order)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- loading
def normalise_common(spec: Any) -> None:
    """Checks and normalisation shared by every grid spec (``out``, ``data_dir``,
    ``model_configs``, ``method_configs`` and distinct dataset names), in place.

    Raises:
        ConfigError: a bad value, naming the field.
    """
    if not isinstance(spec.out, (str, Path)) or not str(spec.out):
        raise ConfigError(f"out must be a folder path, got {spec.out!r}")
    spec.out = str(spec.out)
    if spec.data_dir is not None:
        spec.data_dir = str(spec.data_dir)
    for name in ("model_configs", "method_configs"):
        value = getattr(spec, name)
        if not isinstance(value, Mapping) or not all(
                isinstance(v, Mapping) for v in value.values()):
            raise ConfigError(f"{name} must map a name to a table of options, got "
                              f"{value!r}")
        setattr(spec, name, {str(k): dict(v) for k, v in value.items()})
    labels = [dataset_label(d) for d in spec.datasets]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"datasets: two entries share the name {dup[0]!r}; rename one "
                          "of the folders")


def check_datasets(datasets: list[str], where: str) -> None:
    """Raise UnknownNameError (with the closest name) unless every dataset is a catalog
    name or an existing path. Nothing is loaded or fetched."""
    from trustrec.data.fetch import CATALOG

    for d in datasets:
        if d.lower() in CATALOG or Path(d).expanduser().exists():
            continue
        close = difflib.get_close_matches(d.lower(), sorted(CATALOG), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(
            f"{where}: datasets: unknown dataset {d!r}{hint}; known datasets: "
            f"{', '.join(sorted(CATALOG))}; or give a path to a dataset folder or file")


def str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{name}: {v!r} is not a name")
        out.append(v)
    if len(set(out)) != len(out):
        dup = next(v for v in out if out.count(v) > 1)
        raise ConfigError(f"{name}: {dup!r} is listed twice")
    return out


def num_list(name: str, value: Any, kind: type) -> list:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name} must be a non-empty list of numbers, got {value!r}")
    out = []
    for v in value:
        try:
            if isinstance(v, bool):
                raise ValueError
            x = float(v) if kind is float else int(v)
            if kind is int and isinstance(v, float) and v != int(v):
                raise ValueError
            if kind is float and not math.isfinite(x):
                raise ValueError
        except (TypeError, ValueError):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{name}: {v!r} is not {what}") from None
        out.append(x)
    if name in ("ratios", "seeds", "ks") and len(set(out)) != len(out):
        dup = next(v for v in out if out.count(v) > 1)
        raise ConfigError(f"{name}: {dup!r} is listed twice")
    return out


def spec_from_mapping(values: Mapping[str, Any] | None, where: str = "bench spec",
                      validate: bool = True) -> BenchSpec:
    """Build a spec from a mapping (e.g. a parsed file); unknown keys are a ConfigError.

    Args:
        values: top-level keys of :class:`BenchSpec`; missing keys keep their defaults.
        where: context for error messages (e.g. the file name).
        validate: also check names against the registries (:meth:`BenchSpec.validate`).
            ``kind = "unlearning"`` (this grid's kind) is accepted and dropped.
    """
    values = dict(values or {})
    if values.get("kind", "unlearning") == "unlearning":
        values.pop("kind", None)
    return build_spec(BenchSpec, values, where, validate)


def build_spec(cls: type, values: Mapping[str, Any] | None, where: str, validate: bool
               ) -> Any:
    """A grid spec of dataclass ``cls`` from a mapping, checked (and with ``validate``,
    its names checked against the registries by ``cls.validate``).

    Raises:
        ConfigError: not a mapping, an unknown key (with the closest valid key) or a bad
            value.
    """
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a table of options at the top level, got "
                          f"{type(values).__name__}")
    spec = build_config(cls, values or {}, where=where, typed=False)
    if validate:
        spec.validate(where)
    return spec


def load_spec(path: str | Path, validate: bool = True) -> BenchSpec:
    """Load a spec from a ``.toml`` or ``.yaml``/``.yml`` file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: unknown extension, a syntax error (with line), an unknown key
            (with the closest valid key), or a bad value.
        UnknownNameError: an unknown dataset, model, method or selection.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spec file not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    else:
        raise ConfigError(f"{path}: unknown spec format {suffix!r}; use .toml, .yaml or .yml")
    return spec_from_mapping(values, where=str(path), validate=validate)
