"""trustrec.bench: one experiment engine for every kind of benchmark grid.

A grid spec (TOML/YAML, ``kind = "unlearning"`` by default, or ``"privacy"``) expands to
cells; ``run_grid(spec)`` runs every cell into its own folder (resumable, serially or in
parallel), then writes ``results.csv`` (``kind, cell, <axes>, metric, value``),
``summary.csv``, ``report.md``, ``report.html`` and PNG plots. ``trustrec bench`` is the
command-line face. Experiment kinds live in :mod:`trustrec.bench.experiments`.
"""

from trustrec.bench.collect import collect, read_results, result_columns, results_frame
from trustrec.bench.grid import GridSpec, grid_spec_from_mapping, load_grid_spec
from trustrec.bench.report import write_report
from trustrec.bench.runner import BenchResult, CellResult, run_bench, run_cell, run_grid
from trustrec.bench.spec import (
    BenchSpec,
    Cell,
    enumerate_cells,
    load_spec,
    spec_from_mapping,
)

__all__ = [
    "BenchResult",
    "BenchSpec",
    "Cell",
    "CellResult",
    "GridSpec",
    "collect",
    "enumerate_cells",
    "grid_spec_from_mapping",
    "load_grid_spec",
    "load_spec",
    "read_results",
    "result_columns",
    "results_frame",
    "run_bench",
    "run_cell",
    "run_grid",
    "spec_from_mapping",
    "write_report",
]
