"""trustrec.bench: grid specs, the resumable runner, results collection and reports.

``run_bench(BenchSpec(...))`` runs every cell (dataset × model × method × selection ×
ratio × seed) into its own folder, then writes ``results.csv`` (long format),
``report.md``, ``report.html`` and PNG plots. ``trustrec bench`` is the command-line face.
"""

from trustrec.bench.collect import RESULT_COLUMNS, collect, read_results, results_frame
from trustrec.bench.report import write_report
from trustrec.bench.runner import BenchResult, CellResult, run_bench, run_cell
from trustrec.bench.spec import (
    BenchSpec,
    Cell,
    enumerate_cells,
    load_spec,
    spec_from_mapping,
)

__all__ = [
    "RESULT_COLUMNS",
    "BenchResult",
    "BenchSpec",
    "Cell",
    "CellResult",
    "collect",
    "enumerate_cells",
    "load_spec",
    "read_results",
    "results_frame",
    "run_bench",
    "run_cell",
    "spec_from_mapping",
    "write_report",
]
