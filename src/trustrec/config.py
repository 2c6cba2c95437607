"""Plain-dataclass configs built from untrusted mappings (CLI, TOML/YAML, JSON)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from trustrec.errors import ConfigError

T = TypeVar("T")


def build_config(cls: type[T], values: Mapping[str, Any] | None = None, *, where: str = "",
                 typed: bool = True) -> T:
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown keys.

    A typo gets a specific error with the closest valid name, e.g.
    ``unknown option 'epoch' for BPRConfig (did you mean 'epochs'?)``.

    Args:
        cls: a dataclass type.
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
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(names)}"
            ctx = f" in {where}" if where else ""
            raise ConfigError(f"unknown option {key!r} for {cls.__name__}{ctx}{hint}")
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_python(values) if typed else cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(config)"
        ctx = f" in {where}" if where else ""
        raise ConfigError(f"{cls.__name__}.{field}{ctx}: {err['msg']} (got "
                          f"{err.get('input')!r})") from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {cls.__name__}: {exc}") from exc


@functools.cache
def _adapter(cls: type) -> Any:
    """A pydantic validator of dataclass ``cls``: values are converted by the field's type
    (``"false"`` is a boolean false; ``8.5`` for an integer field, or ``"fast"`` for a
    number, is an error naming the field), then ``__post_init__`` checks ranges."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def to_dict(cfg: object) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config."""
    return dataclasses.asdict(cfg)  # type: ignore[call-overload]


def suggest(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` or a list of valid choices, for error messages."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; available: {', '.join(choices)}"


def check_ranges(cfg: object, *, at_least_one: tuple[str, ...] = (),
                 non_negative: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                 unit_interval: tuple[str, ...] = ()) -> None:
    """Check numeric fields of a config dataclass; the first bad one raises ConfigError.

    The message names the class and field, e.g. ``BPRConfig.lr must be > 0, got -1``.

    Args:
        cfg: the config instance (typically ``self`` in ``__post_init__``).
        at_least_one: fields that must be ``>= 1``.
        non_negative: fields that must be ``>= 0``.
        positive: fields that must be ``> 0``.
        unit_interval: fields that must lie in ``(0, 1]``.
    """
    rules = ((at_least_one, ">= 1", lambda v: v >= 1),
             (non_negative, ">= 0", lambda v: v >= 0),
             (positive, "> 0", lambda v: v > 0),
             (unit_interval, "in (0, 1]", lambda v: 0 < v <= 1))
    for names, text, ok in rules:
        for name in names:
            value = getattr(cfg, name)
            if not ok(value):
                raise ConfigError(f"{type(cfg).__name__}.{name} must be {text}, got {value}")


class Configured:
    """Base of a method held by a plain-dataclass config (``Config``, set by subclasses).

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
