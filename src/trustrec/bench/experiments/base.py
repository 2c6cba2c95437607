"""What an experiment kind declares; everything else about running a grid is generic.

An experiment kind (unlearning, privacy, ...) is one module that registers one
:class:`Experiment` subclass in :data:`EXPERIMENTS`. It declares:

* ``spec_class``: its spec, a :class:`~trustrec.bench.grid.GridSpec` subclass adding its
  own axes and options; ``axes``: the names of its cells' axes, in the order of the
  ``results.csv`` columns.
* ``cells(spec)`` (via the spec), ``cell_from_axes(axes)``: its cells, each with an ``id``
  (its folder) and ``axes()``.
* ``context(spec)``: a :class:`~trustrec.bench.context.GridContext` subclass holding the
  kind's shared artefacts (learned models, references, base models ...), each computed
  once per key, on disk, idempotently.
* ``stages(ctx, pending)``: the shared artefacts the pending cells need, as ordered
  :class:`Stage` lists of keys; ``run_stage(ctx, stage, key)`` computes one.
* ``cell_config(ctx, cell)``: everything a cell's result depends on (its fingerprint, with
  the source it runs, :meth:`Experiment.source`); ``compute_cell(ctx, cell)``: its
  :class:`CellOutput`.
* ``report_module``: its report, as renderer-independent sections
  (:mod:`trustrec.bench.render`), with header lines and notes;
  ``summary_line(metrics, k)``: one log line per cell.
* optionally ``check_dataset(ctx, label)``: checks of a dataset before any cell runs.

The generic engine (:mod:`trustrec.bench.runner`) parses specs, writes ``spec.json``, runs
stages and cells serially, in local processes or on Ray, resumes, collects ``results.csv``
(``kind, cell, <axes>, metric, value``) and ``summary.csv``, and renders Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from trustrec.registry import Registry


@dataclass
class CellOutput:
    """What one cell computed.

    Attributes:
        metrics: flat name → value (``metrics.json``; the rows of ``results.csv``).
        tables: file name → table, written into the cell's folder (``.parquet`` or
            ``.csv`` by the name's suffix).
        record: extra facts for ``run.json`` (e.g. timings).
    """

    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """A stage of shared artefacts: every key is computed once, in parallel when allowed,
    before the cells run."""

    name: str
    keys: list[Any]


class Experiment:
    """Base of the experiment kinds (see the module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    spec_class: ClassVar[type] = object
    axes: ClassVar[tuple[str, ...]] = ()
    #: Columns of ``axes`` that are numbers in ``results.csv`` (others are text).
    numeric_axes: ClassVar[dict[str, type]] = {"seed": int}
    #: Subpackages of trustrec whose source a cell's fingerprint covers, beside the kind's
    #: own module and the shared cell code (:meth:`source`).
    source_packages: ClassVar[tuple[str, ...]] = ()
    #: Defaults of axes that older results files lack (``collect`` fills them in).
    axis_defaults: ClassVar[dict[str, Any]] = {}
    #: The module that renders the report (imported when a report is written):
    #: ``sections(frame, spec, out)``, ``NOTES`` and optionally ``header_lines``.
    report_module: ClassVar[str] = ""
    #: Top-level folders of the output folder that hold shared state, not cells.
    private_dirs: ClassVar[tuple[str, ...]] = ("plots",)

    def source(self) -> str:
        """Fingerprint of the code a cell runs: :attr:`source_packages`, the kind's own
        module and the shared context (not the report code: a report change recomputes
        nothing)."""
        import inspect

        import trustrec
        from trustrec.bench.env import source_fingerprint

        own = Path(inspect.getfile(type(self))).relative_to(Path(trustrec.__file__).parent)
        return source_fingerprint(*self.source_packages, "bench/context.py", own.as_posix())

    def context(self, spec: Any, progress: bool = False) -> Any:
        """The run's shared state (datasets, splits, the kind's artefacts)."""
        raise NotImplementedError

    def check_dataset(self, ctx: Any, label: str) -> None:
        """Load a dataset before any cell runs; a kind may check more (e.g. that it has
        the attributes the spec names). An error here fails the whole run."""
        ctx.dataset(label)

    def cell_from_axes(self, axes: dict[str, Any]) -> Any:
        """The cell with these axis values (the inverse of ``cell.axes()``)."""
        raise NotImplementedError

    def stages(self, ctx: Any, pending: Sequence[Any]) -> list[Stage]:
        """The shared artefacts the pending cells need and that are not stored yet."""
        return []

    def dependencies(self, cell: Any) -> list[tuple[str, Any]]:
        """The ``(stage, key)`` artefacts a cell needs (it fails when one of them did)."""
        return []

    def key_dependencies(self, stage: str, key: Any) -> list[tuple[str, Any]]:
        """The ``(stage, key)`` artefacts an artefact needs (skipped when one failed)."""
        return []

    def describe_key(self, stage: str, key: Any) -> str:
        """How log lines name an artefact (default: the stage and the key's values)."""
        values = key.values() if isinstance(key, dict) else (
            key if isinstance(key, (list, tuple)) else [key])
        return f"{stage} {'/'.join(str(v) for v in values)}"

    def warm_up(self, ctx: Any, stages: Sequence[Stage], pending: Sequence[Any]) -> None:
        """Prepare the parent process before parallel workers start (default: nothing)."""

    def run_stage(self, ctx: Any, stage: str, key: Any) -> None:
        """Compute and store one artefact of a stage (idempotent)."""
        raise NotImplementedError(stage)

    def cell_config(self, ctx: Any, cell: Any) -> dict[str, Any]:
        """Everything a cell's result depends on (written to ``config.json``)."""
        raise NotImplementedError

    def compute_cell(self, ctx: Any, cell: Any) -> CellOutput:
        """Compute one cell (writes no cell files)."""
        raise NotImplementedError

    def _report(self) -> Any:
        import importlib

        return importlib.import_module(self.report_module) if self.report_module else None

    def sections(self, frame: pd.DataFrame, spec: Any, out: Path) -> list[Any]:
        """The report's sections of this kind (after the shared header): the report
        module's ``sections(frame, spec, out)``."""
        report = self._report()
        return report.sections(frame, spec, out) if report else []

    def header(self, frame: pd.DataFrame, spec: Any) -> list[str]:
        """The kind's lines of the report header, after the axes: the report module's
        ``header_lines(frame, spec)`` (default: none)."""
        lines = getattr(self._report(), "header_lines", None)
        return lines(frame, spec) if lines else []

    def notes(self, k: int) -> list[str]:
        """The report's "how to read this" lines: the report module's ``NOTES``, with
        ``{k}`` the headline cut-off."""
        return [n.format(k=k) for n in getattr(self._report(), "NOTES", ())]

    def is_legacy(self, columns: list[str]) -> bool:
        """Whether a ``results.csv`` with these columns (no ``kind``) is this kind's,
        written before experiment kinds existed."""
        return False

    def from_legacy(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A legacy results table of this kind in today's axes and metric names (the
        caller adds ``kind`` and an empty ``cell``)."""
        return frame

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """The log line of a finished cell (after its id)."""
        return ""


EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment kind")
