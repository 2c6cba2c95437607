"""Typed configs: types, ranges and choices of every option, checked by one mechanism.

A config is a dataclass made by :func:`typed_config`: a pydantic dataclass (``extra =
"forbid"``) whose fields declare their rules, and which raises :class:`ConfigError` naming
the class, the field, the rule and the value however it is built::

    @typed_config
    class ExampleConfig:
        dim: PositiveInt = 64                        # an integer >= 1
        lr: PositiveFloat = 0.1                      # > 0
        lr_decay: UnitInterval = 0.97                # in (0, 1]
        capacity: Annotated[float, Field(ge=1)] = 1.2
        optimizer: Literal["adam", "sgd"] = "adam"   # one of fixed choices
        curriculum: Annotated[str, one_of(CURRICULA.names, "curriculum")] = "popularity"

``ExampleConfig(lr=-1)``, ``dataclasses.replace(cfg, lr=-1)`` and ``build_config(
ExampleConfig, {"lr": -1})`` all fail with ``ExampleConfig.lr: Input should be greater than
0 (got -1)`` (``build_config`` adds where the values came from: ``in model 'bpr'``).
Checks across objects (a model's options inside a method's) stay in ``__post_init__``,
which pydantic runs after the fields are valid; a ConfigError it raises passes through.

:func:`build_config` builds a config from untrusted mappings (CLI, TOML/YAML, JSON): values
are converted by the field's type (``"false"`` is a boolean false, ``"32"`` an integer,
``"8.5"`` for an integer field is an error); an unknown key gets the closest valid name.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import NonNegativeFloat as NonNegativeFloat
from pydantic import PositiveFloat as PositiveFloat
from pydantic_core import PydanticCustomError

from trustrec.errors import ConfigError, TrustrecError

T = TypeVar("T")

def _not_a_bool(value: Any) -> Any:
    """Refuse a boolean where a count is due (lax mode would read True as 1)."""
    if isinstance(value, bool):
        raise PydanticCustomError("count_not_bool", "a count is due, not a boolean")
    return value


#: A count >= 1 (epochs, dimensions, shards); a boolean is refused, not read as 1.
PositiveInt = Annotated[int, BeforeValidator(_not_a_bool), Field(gt=0)]
#: A count >= 0; a boolean is refused, not read as 0 or 1.
NonNegativeInt = Annotated[int, BeforeValidator(_not_a_bool), Field(ge=0)]
#: A share in ``(0, 1]`` (a fraction, a decay factor).
UnitInterval = Annotated[float, Field(gt=0, le=1)]

#: The pydantic settings of every typed config: no unknown keys, no infinite or NaN number.
CONFIG_DICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def typed_config(cls: type[T]) -> type[T]:
    """Make ``cls`` a typed config: a pydantic dataclass with ``extra="forbid"`` whose
    construction raises :class:`ConfigError` (class, field, rule and value) on a bad value.

    It stays a dataclass (``dataclasses.fields``, ``asdict``, ``replace`` and :func:`to_dict`
    work; ``replace`` validates too). A subclass of a typed config is decorated again.
    """
    from pydantic.dataclasses import dataclass

    out = dataclass(cls, config=CONFIG_DICT)
    init = out.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise _config_error(type(self), exc) from None

    out.__init__ = __init__  # type: ignore[method-assign]
    return out  # type: ignore[return-value]


def one_of(names: Iterable[str] | Callable[[], Iterable[str]], what: str = "name"
           ) -> AfterValidator:
    """A field rule: the value must be one of ``names`` (or of ``names()``, read when a
    value is checked, e.g. a registry's ``names``); the error gives the closest name.

    Use ``Literal[...]`` for a fixed set of choices; this is for open sets (registries),
    e.g. ``aggregation: Annotated[str, one_of(AGGREGATIONS.names, "aggregation")]``.
    """
    def check(value: str) -> str:
        valid = list(names() if callable(names) else names)
        if value not in valid:
            raise PydanticCustomError("unknown_name", "unknown {what} {value}{hint}",
                                      {"what": what, "value": repr(value),
                                       "hint": suggest(str(value), sorted(valid))})
        return value

    return AfterValidator(check)


def build_config(cls: type[T], values: Mapping[str, Any] | None = None, *, where: str = "",
                 typed: bool = True) -> T:
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown keys.

    A typo gets a specific error with the closest valid name, e.g.
    ``unknown option 'epoch' for BPRConfig (did you mean 'epochs'?)``.

    Values are converted by the field's type (pydantic's lax mode): text such as
    ``"false"``, ``"32"`` or ``"0.1"`` (the CLI's ``KEY=VALUE``) becomes a boolean, an
    integer or a number where the field is one, and ``"8.5"`` for an integer field is an
    error naming the field. Text for a list, tuple or mapping field is read as JSON
    (``layers=[64,32]``), and ``null`` / ``none`` for a field that may be None is None.

    Args:
        cls: a dataclass type (a :func:`typed_config` one checks ranges and choices too).
        values: field values; missing fields keep their defaults.
        where: context for the error message (e.g. the spec file).
        typed: convert and check values by the fields' types first (pydantic); a class
            whose ``__post_init__`` normalises looser input itself (the grid specs, which
            take comma strings for lists) passes False.
    """
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            raise ConfigError(_unknown_option(cls, key, where))
    try:
        if not typed:
            return cls(**values)
        return _adapter(cls).validate_python(_from_text(cls, values))
    except ValidationError as exc:
        raise _config_error(cls, exc, where) from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {cls.__name__}: {exc}") from exc


@functools.cache
def _adapter(cls: type) -> Any:
    """A pydantic validator of dataclass ``cls`` (typed config or plain dataclass)."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The declared type of each field of dataclass ``cls`` (with its Annotated rules)."""
    return typing.get_type_hints(cls, include_extras=True)


def _leaves(tp: Any) -> list[Any]:
    """The alternatives a field type admits: ``Annotated`` unwrapped, unions split,
    generics reduced to their origin (``tuple[int, ...]`` -> ``tuple``), a ``Literal``'s
    values replaced by their types."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _leaves(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(tp) for leaf in _leaves(arg)]
    if origin is Literal:
        return [type(v) for v in typing.get_args(tp)]
    return [origin or tp]


_CONTAINERS = (list, tuple, dict, set, frozenset, collections.abc.Mapping,
               collections.abc.Sequence, collections.abc.Set)


def _from_text(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with text for container fields read as JSON, text naming a numeric
    ``Literal`` choice made that number (``"2"`` for ``Literal[1, 2]``), and ``null`` /
    ``none`` for optional fields made None (other text is converted by pydantic)."""
    if not any(isinstance(v, str) for v in values.values()):
        return values
    hints = _field_types(cls)
    out = dict(values)
    for key, value in values.items():
        if not isinstance(value, str) or key not in hints:
            continue
        leaves = _leaves(hints[key])
        if str in leaves or Any in leaves:
            continue
        choices = _literal_values(hints[key])
        if choices and value.strip() in [str(c) for c in choices]:
            out[key] = choices[[str(c) for c in choices].index(value.strip())]
            continue
        if type(None) in leaves and value.strip().lower() in ("null", "none"):
            out[key] = None
        elif any(leaf in _CONTAINERS for leaf in leaves):
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # left as text: pydantic names the field and the expected type
    return out


def _unknown_option(cls: type, key: str, where: str = "") -> str:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(names)}"
    ctx = f" in {where}" if where else ""
    return f"unknown option {key!r} for {cls.__name__}{ctx}{hint}"


def _config_error(cls: type, exc: ValidationError, where: str = "") -> TrustrecError:
    """The first problem of ``exc`` as one line naming the class, field, rule and value,
    e.g. ``BPRConfig.lr in model 'bpr': Input should be greater than 0 (got -1)``; an
    error a ``__post_init__`` check raised on purpose is returned as it is."""
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, TrustrecError):
        return cause
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "unexpected_keyword_argument":
        return ConfigError(_unknown_option(cls, loc, where))
    ctx = f" in {where}" if where else ""
    if not loc:
        return ConfigError(f"bad value for {cls.__name__}{ctx}: {err['msg']}")
    if err["type"] == "unknown_name":  # one_of: the message names the value already
        return ConfigError(f"{cls.__name__}.{loc}{ctx}: {err['msg']}")
    hint = ""
    if err["type"] == "literal_error":  # the field's choices (of a list's items too)
        choices = [str(v) for v in _literal_values(_field_types(cls).get(str(err["loc"][0])))]
        close = difflib.get_close_matches(str(err.get("input")), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{cls.__name__}.{loc}{ctx}: {err['msg']} (got "
                       f"{err.get('input')!r}{hint})")


def _literal_values(tp: Any) -> list[Any]:
    """The values of the ``Literal`` types inside ``tp``."""
    if typing.get_origin(tp) is Literal:
        return list(typing.get_args(tp))
    return [v for arg in typing.get_args(tp) for v in _literal_values(arg)]


def to_dict(cfg: object) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config."""
    return dataclasses.asdict(cfg)  # type: ignore[call-overload]


def name_list(value: Iterable[str] | str, what: str, hint: str = "",
              check: Callable[[str], object] | None = None) -> list[str]:
    """Names from a list or a comma string, stripped: at least one, each passing
    ``check`` (which raises for a bad name), none twice.

    Args:
        value: e.g. ``"gender,age"`` or ``["lr", "mlp"]``.
        what: what a name is, for the messages (``"attribute"``).
        hint: appended to the "none given" message (``" (e.g. gender,age)"``).
        check: called with each name; raises for an unknown one.

    Raises:
        ConfigError: no name, or a name given twice (``attribute 'age' is given twice``).
    """
    parts = value.split(",") if isinstance(value, str) else value
    names = [str(a).strip() for a in parts if str(a).strip()]
    if not names:
        raise ConfigError(f"no {what} given{hint}")
    for name in names:
        if check is not None:
            check(name)
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ConfigError(f"{what} {dup[0]!r} is given twice")
    return names


def suggest(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` or a list of valid choices, for error messages."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; available: {', '.join(choices)}"


class Configured:
    """Base of a method held by a typed config (``Config``, set by subclasses;
    :func:`typed_config`).

    ``Method(config)`` keeps ``config`` (default: ``Config()``); ``repr`` shows it and
    :meth:`config_dict` gives it as a JSON-ready dict.
    """

    Config: ClassVar[type] = object

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return to_dict(self.config)
