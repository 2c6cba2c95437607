"""Grid specs of every experiment kind: the shared axes, parsing, and dispatch by ``kind``.

A spec file (TOML or YAML, by extension) names an experiment *kind* (``kind = "..."``;
no ``kind`` means ``"unlearning"``) and that kind's axes. Every kind shares the axes and
settings of :class:`GridSpec` (datasets, models, seeds, split, cut-offs, per-model configs,
where data lives, how cells run); a kind adds its own in a subclass declared by its
experiment module (:mod:`trustrec.bench.experiments`). Every key and value is checked
before anything runs: a typo names the key and the closest valid one, a bad value names
the field and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
)
from pydantic_core import PydanticCustomError

from trustrec.config import build_config, one_of, to_dict, typed_config
from trustrec.errors import ConfigError, UnknownNameError

#: Default experiment kind of a spec without ``kind``.
DEFAULT_KIND = "unlearning"
#: How a grid splits each dataset (see :func:`trustrec.data.split.make_split`).
Split = Literal["random", "leave_last_out", "temporal"]


def default_list(values: list[Any]) -> Any:
    """A dataclass field defaulting to a fresh copy of ``values``."""
    return field(default_factory=lambda: list(values))


# ---------------------------------------------------------------------------- field rules
def _as_list(value: Any) -> Any:
    """A comma string (the command line's ``0,1,2``) or a single number as a list."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _distinct(values: list[Any]) -> list[Any]:
    dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if dup is not None:
        raise PydanticCustomError("listed_twice", "{value} is listed twice",
                                  {"value": repr(dup)})
    return values


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def axis_of(item: Any) -> Any:
    """The type of a grid axis: a non-empty list of distinct ``item`` values (a comma
    string or a single value is accepted)."""
    return Annotated[list[item], BeforeValidator(_as_list), Field(min_length=1),
                     AfterValidator(_distinct)]


#: A non-empty name (a dataset, model, method, ...).
Name = Annotated[str, Field(min_length=1)]
#: Axes of names, of seeds (>= 0) and of cut-offs (>= 1).
Names, Seeds, Cutoffs = axis_of(Name), axis_of(NonNegativeInt), axis_of(PositiveInt)
#: A folder path (text; a Path is accepted).
Folder = Annotated[str, BeforeValidator(_as_text), Field(min_length=1)]
#: Per name, a table of options.
Configs = dict[str, dict[str, Any]]


def _engines() -> list[str]:
    from trustrec.bench.engine import ENGINES

    return ENGINES.names()


def _protocols() -> list[str]:
    from trustrec.bench.protocol import PROTOCOLS

    return sorted(PROTOCOLS)


@typed_config
class GridSpec:
    """What every grid shares; an experiment kind subclasses it with its own axes.

    Every field's type, range and choices are checked when the spec is built (a typed
    config, :func:`trustrec.config.typed_config`); list axes also take a comma string.

    Attributes:
        datasets: known dataset names (``"ml-100k"``) or paths to dataset folders/files.
        models: registered model names (``trustrec.models.MODELS``).
        seeds: root seeds (>= 0); each drives the split, training and any random selection.
        out: output folder (one sub-folder per cell, plus ``results.csv`` and reports).
        split: ``"random"`` (per-user random shares, :attr:`split_ratios`; the default),
            ``"leave_last_out"`` (each user's last row to test, the one before to
            validation) or ``"temporal"`` (a global time cut at the shares' quantiles).
        split_ratios: train / validation / test shares summing to 1, train and test > 0
            (random and temporal splits).
        ks: ranking cut-offs (>= 1); the headline cut-off is 20 when present, else the
            largest.
        model_configs: per model name, config values overriding the model's defaults.
        data_dir: cache folder for known datasets (default ``$TRUSTREC_DATA`` or
            ``~/.cache/trustrec``).
        workers: tasks run at once (default: the machine's CPU count); 1 runs every task
            in this process, one after the other.
        engine: where parallel tasks run: ``"local"`` processes (default) or ``"ray"``.
            Results do not depend on it, nor on ``workers``.
        protocol: ``"trustrec"`` (default) or ``"cure4rec"``
            (:mod:`trustrec.bench.protocol`; its split ratios then replace the spec's).
    """

    kind: ClassVar[str] = ""
    datasets: Names = default_list(["ml-100k"])
    models: Names = default_list(["bpr"])
    seeds: Seeds = default_list([0])
    out: Folder = "runs/bench"
    split: Split = "random"
    split_ratios: Annotated[list[NonNegativeFloat], BeforeValidator(_as_list),
                            Field(min_length=3, max_length=3)] = default_list([0.8, 0.1, 0.1])
    ks: Cutoffs = default_list([10, 20])
    model_configs: Configs = field(default_factory=dict)
    data_dir: Annotated[str | None, BeforeValidator(_as_text)] = None
    workers: PositiveInt | None = None
    engine: Annotated[str, one_of(_engines, "engine")] = "local"
    protocol: Annotated[str, one_of(_protocols, "protocol")] = "trustrec"

    def __post_init__(self) -> None:
        from trustrec.bench.protocol import get_protocol

        forced = get_protocol(self.protocol).split_ratios
        if forced is not None:
            self.split_ratios = list(forced)
        sr = self.split_ratios
        if min(sr[0], sr[2]) <= 0 or abs(sum(sr) - 1) > 1e-9:
            raise ConfigError(f"split_ratios must be three non-negative shares (train, "
                              f"validation, test) summing to 1, with train and test > 0, "
                              f"got {sr}")
        labels = [dataset_label(d) for d in self.datasets]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"datasets: two entries share the name {dup[0]!r}; rename "
                              "one of the folders")

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "spec") -> None:
        """Check datasets, models and model configs against the registries.

        Raises:
            UnknownNameError: an unknown dataset or model.
            ConfigError: a model config key the model does not have, or a bad value.
        """
        from trustrec.models import MODELS

        check_datasets(self.datasets, where)
        check_names(self.models, MODELS, "models", where)
        check_configs(self.model_configs, MODELS, "model_configs", where)

    def model_config(self, model: str) -> dict[str, Any]:
        """The full config of ``model`` (defaults overridden by :attr:`model_configs`)."""
        from trustrec.models import MODELS

        cls = MODELS.get(model)
        return to_dict(build_config(cls.Config, self.model_configs.get(model, {}),
                                    where=f"model_configs.{model}"))

    def cells(self) -> list[Any]:
        """The grid's cells in run order (each kind defines them)."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the spec, with its ``kind``."""
        return {"kind": self.kind, **dataclasses.asdict(self)}


def check_names(names: list[str], registry: Any, axis: str, where: str) -> None:
    """Raise UnknownNameError (with the closest name) for a name not in ``registry``."""
    for name in names:
        try:
            registry.get(name)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{where}: {axis}: {exc}") from None


def check_configs(configs: Mapping[str, Mapping[str, Any]], registry: Any, axis: str,
                  where: str) -> None:
    """Build every ``configs[name]`` against ``registry.get(name).Config`` (typo and value
    errors name the axis and the key)."""
    for name, values in configs.items():
        try:
            cls = registry.get(name)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{where}: {axis}: {exc}") from None
        build_config(cls.Config, values, where=f"{where}: {axis}.{name}")


def dataset_label(name_or_path: str) -> str:
    """The name a dataset goes by in cell ids: a known name, or a path's last component."""
    from trustrec.data.fetch import CATALOG

    if name_or_path.lower() in CATALOG:
        return name_or_path.lower()
    p = Path(name_or_path).expanduser()
    label = p.stem if p.is_file() else p.name
    return label or str(name_or_path)


def fingerprint(obj: Any) -> str:
    """Short sha256 of a JSON-ready object (canonical key order)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


# ---------------------------------------------------------------------------- loading
def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The top-level table of a ``.toml`` / ``.yaml`` / ``.yml`` spec file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: an unknown extension, a syntax error (with its line), or a file whose
            top level is not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spec file not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                          ) from None
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
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path}: expected a table of options at the top level, got "
                          f"{type(values).__name__}")
    return dict(values)


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
    spec = build_config(cls, values or {}, where=where)
    if validate:
        spec.validate(where)
    return spec


def grid_spec_from_mapping(values: Mapping[str, Any] | None, where: str = "spec",
                           validate: bool = True) -> GridSpec:
    """A spec of the kind its ``kind`` key names (default ``"unlearning"``).

    Raises:
        ConfigError: an unknown kind (with the closest known one), an unknown key or a bad
            value.
        UnknownNameError: an unknown dataset, model, method, ...
    """
    from trustrec.bench.experiments import get_experiment

    values = dict(values or {})
    kind = values.pop("kind", DEFAULT_KIND)
    experiment = get_experiment(str(kind), where)
    return build_spec(experiment.spec_class, values, where, validate)


def load_grid_spec(path: str | Path, overrides: Mapping[str, Any] | None = None,
                   validate: bool = True) -> GridSpec:
    """Load a spec file of any kind, with command-line ``overrides`` (None values ignored).

    Raises:
        ConfigError: an override the kind has no option for (naming the kind), or
            anything :func:`grid_spec_from_mapping` raises.
    """
    return spec_with_overrides(read_spec_file(path), overrides, str(path), validate)


def spec_with_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                        where: str, validate: bool = True) -> GridSpec:
    """A spec of any kind from ``values`` (a spec file's table, or nothing) with
    command-line ``overrides`` (None values ignored; paths become strings).

    Raises:
        ConfigError: an override the kind has no option for (naming the kind and its
            options), or anything :func:`grid_spec_from_mapping` raises.
    """
    from trustrec.bench.experiments import get_experiment

    values = dict(values)
    given = {k: (str(v) if isinstance(v, Path) else v)
             for k, v in (overrides or {}).items() if v is not None}
    if "kind" in given:
        values["kind"] = given.pop("kind")
    kind = str(values.get("kind", DEFAULT_KIND))
    cls = get_experiment(kind, where).spec_class
    names = {f.name for f in dataclasses.fields(cls)}
    for key in given:
        if key not in names:
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to the {kind} "
                              f"grid of {where} (its options: {', '.join(sorted(names))})")
    values.update(given)
    if given:
        where = f"{where} with command-line options"
    return grid_spec_from_mapping(values, where, validate)
