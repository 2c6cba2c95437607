"""The unlearning grid's spec, and the shared spec helpers, under their historic names.

:class:`BenchSpec` and :class:`Cell` live in :mod:`trustrec.bench.experiments.unlearning`;
the helpers every kind shares in :mod:`trustrec.bench.grid`. This module keeps the names
code and tests have imported from it, and loads unlearning specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustrec.bench.experiments.unlearning import (
    GRAIN_SELECTIONS,
    GRAINS,
    REFERENCE_METHOD,
    BenchSpec,
    Cell,
    enumerate_cells,
)
from trustrec.bench.grid import (
    build_spec,
    check_datasets,
    dataset_label,
    fingerprint,
    read_spec_file,
)
from trustrec.errors import ConfigError


def spec_from_mapping(values: Mapping[str, Any] | None, where: str = "bench spec",
                      validate: bool = True) -> BenchSpec:
    """An unlearning spec from a mapping; unknown keys are a ConfigError.

    ``kind = "unlearning"`` (this grid's kind) is accepted and dropped; another kind is an
    error (load it with :func:`trustrec.bench.grid.grid_spec_from_mapping`).
    """
    values = dict(values or {})
    kind = values.pop("kind", "unlearning")
    if kind != "unlearning":
        raise ConfigError(f"{where}: kind {kind!r} is not an unlearning grid; load it with "
                          "trustrec.bench.grid.load_grid_spec")
    return build_spec(BenchSpec, values, where, validate)


def load_spec(path: str | Path, validate: bool = True) -> BenchSpec:
    """Load an unlearning spec from a ``.toml`` or ``.yaml``/``.yml`` file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: unknown extension, a syntax error (with line), an unknown key
            (with the closest valid key), or a bad value.
        UnknownNameError: an unknown dataset, model, method or selection.
    """
    return spec_from_mapping(read_spec_file(path), where=str(path), validate=validate)


__all__ = ["GRAINS", "GRAIN_SELECTIONS", "REFERENCE_METHOD", "BenchSpec", "Cell",
           "build_spec", "check_datasets", "dataset_label", "enumerate_cells", "fingerprint",
           "load_spec", "spec_from_mapping"]
