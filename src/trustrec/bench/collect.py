"""Gather finished cells into one long table, ``results.csv``.

Every finished cell folder (its ``run.json`` says ``"status": "done"``) contributes one row
per metric of its ``metrics.json``, with the cell's axes taken from its ``config.json``.
Unfinished or half-written cells are skipped. The ``grain`` column (what the forget request
named: ``user``, ``interaction`` or ``item``) is ``user`` for cells written before grains
existed, and a ``results.csv`` without that column reads back with it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench.files import write_atomic
from trustrec.bench.spec import Cell
from trustrec.errors import DataFormatError

#: Columns of ``results.csv``, in order.
RESULT_COLUMNS = ["dataset", "model", "method", "grain", "selection", "ratio", "seed",
                  "metric", "value"]
AXES = RESULT_COLUMNS[:7]
#: Columns of a ``results.csv`` written before the ``grain`` axis existed.
LEGACY_COLUMNS = [c for c in RESULT_COLUMNS if c != "grain"]
RUN_JSON, CONFIG_JSON, METRICS_JSON, PER_USER = ("run.json", "config.json", "metrics.json",
                                                 "per_user.parquet")
#: Folders under the output folder that hold shared state, not cells.
PRIVATE_DIRS = ("_learned", "_reference", "plots")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a malformed file is a DataFormatError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from None


def is_done(folder: Path) -> bool:
    """Whether ``folder/run.json`` exists and says ``"status": "done"``."""
    f = folder / RUN_JSON
    if not f.is_file():
        return False
    try:
        return read_json(f).get("status") == "done"
    except (DataFormatError, AttributeError, OSError):
        return False


def finished_cell_dirs(out: str | Path, cells: Iterable[Any] | None = None,
                       private: tuple[str, ...] = PRIVATE_DIRS) -> list[Path]:
    """Folders of finished cells: the given ones (anything with an ``id``), or every
    finished cell under ``out`` outside the grid's ``private`` top-level folders."""
    out = Path(out)
    if cells is not None:
        dirs = [out / c.id for c in cells]
    else:
        dirs = sorted(p.parent for p in out.rglob(RUN_JSON)
                      if p.relative_to(out).parts[0] not in private)
    return [d for d in dirs if is_done(d)]


def cell_rows(folder: Path) -> list[dict[str, Any]]:
    """Long-format rows (one per metric) of one finished cell."""
    cfg = read_json(folder / CONFIG_JSON)
    metrics = read_json(folder / METRICS_JSON)
    try:
        axes = {a: cfg["cell"].get(a, "user") if a == "grain" else cfg["cell"][a]
                for a in AXES}
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataFormatError(f"{folder / CONFIG_JSON}: no cell axes ({exc})") from None
    rows = []
    for name, value in metrics.items():
        v = float("nan") if value is None else float(value)
        rows.append({**axes, "metric": str(name), "value": v})
    return rows


def results_frame(out: str | Path, cells: Iterable[Cell] | None = None) -> pd.DataFrame:
    """The long results table of the finished cells (columns :data:`RESULT_COLUMNS`)."""
    rows: list[dict[str, Any]] = []
    for folder in finished_cell_dirs(out, cells):
        rows.extend(cell_rows(folder))
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    frame["ratio"] = frame["ratio"].astype(float)
    frame["seed"] = frame["seed"].astype(int)
    frame["value"] = frame["value"].astype(float)
    return frame.reset_index(drop=True)


def collect(out: str | Path, cells: Iterable[Cell] | None = None,
            path: str | Path | None = None) -> pd.DataFrame:
    """Write ``results.csv`` (atomically) from the finished cells and return the table.

    Args:
        out: the benchmark's output folder.
        cells: restrict to these cells (default: every finished cell under ``out``).
        path: where to write (default ``<out>/results.csv``).

    Returns:
        The table: columns exactly ``dataset,model,method,grain,selection,ratio,seed,metric,
        value``; NaN values are written as empty fields.
    """
    frame = results_frame(out, cells)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.10g")
    write_atomic(Path(path) if path else Path(out) / "results.csv",
                       buf.getvalue().encode())
    return frame


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a ``results.csv`` back, checking its columns (a file without ``grain`` gets
    ``grain = "user"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    frame = pd.read_csv(path, dtype={"dataset": str, "model": str, "method": str,
                                     "grain": str, "selection": str, "metric": str})
    if list(frame.columns) == LEGACY_COLUMNS:
        frame.insert(RESULT_COLUMNS.index("grain"), "grain", "user")
    if list(frame.columns) != RESULT_COLUMNS:
        raise DataFormatError(f"{path}: columns are {list(frame.columns)}, expected "
                              f"{RESULT_COLUMNS}")
    return frame

