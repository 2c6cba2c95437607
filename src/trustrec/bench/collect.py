"""Gather finished cells into one long table, ``results.csv``, the same for every kind.

Every finished cell folder (its ``run.json`` says ``"status": "done"``) contributes one row
per metric of its ``metrics.json``: ``kind, cell, <the kind's axes>, metric, value``, the
axes taken from its ``config.json``. Unfinished or half-written cells are skipped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench.files import write_atomic
from trustrec.errors import DataFormatError

RUN_JSON, CONFIG_JSON, METRICS_JSON = "run.json", "config.json", "metrics.json"
#: The leading and trailing columns of every ``results.csv``; the kind's axes go between.
LEAD, TAIL = ["kind", "cell"], ["metric", "value"]


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
                       private: tuple[str, ...] = ()) -> list[Path]:
    """Folders of finished cells: the given ones (anything with an ``id``), or every
    finished cell under ``out`` outside its ``private`` top-level folders."""
    out = Path(out)
    if cells is not None:
        dirs = [out / c.id for c in cells]
    else:
        dirs = sorted(p.parent for p in out.rglob(RUN_JSON)
                      if p.relative_to(out).parts[0] not in private
                      and not p.relative_to(out).parts[0].startswith("_"))
    return [d for d in dirs if is_done(d)]


def result_columns(axes: Sequence[str]) -> list[str]:
    """The columns of a kind's ``results.csv``."""
    return [*LEAD, *axes, *TAIL]


def cell_rows(folder: Path, kind: str, axes: Sequence[str],
              defaults: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Long-format rows (one per metric) of one finished cell."""
    cfg = read_json(folder / CONFIG_JSON)
    metrics = read_json(folder / METRICS_JSON)
    try:
        cell = cfg["cell"]
        values = {a: cell[a] if a in cell else (defaults or {})[a] for a in axes}
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataFormatError(f"{folder / CONFIG_JSON}: no cell axes ({exc})") from None
    head = {"kind": kind, "cell": cfg.get("id", "")}
    return [{**head, **values, "metric": str(name),
             "value": float("nan") if value is None else float(value)}
            for name, value in metrics.items()]


def results_frame(out: str | Path, experiment: Any, cells: Iterable[Any] | None = None
                  ) -> pd.DataFrame:
    """The long results table of the finished cells of one kind."""
    rows: list[dict[str, Any]] = []
    defaults = getattr(experiment, "axis_defaults", {})
    for folder in finished_cell_dirs(out, cells, experiment.private_dirs):
        rows.extend(cell_rows(folder, experiment.name, experiment.axes, defaults))
    frame = pd.DataFrame(rows, columns=result_columns(experiment.axes))
    return typed(frame, experiment)


def typed(frame: pd.DataFrame, experiment: Any) -> pd.DataFrame:
    """The results table with the kind's column types (numbers where they are numbers)."""
    for col in [*LEAD, *experiment.axes, "metric"]:
        if col not in experiment.numeric_axes:
            frame[col] = frame[col].astype(str)
    for col, kind in experiment.numeric_axes.items():
        if col in frame.columns:
            frame[col] = frame[col].astype(kind)
    frame["value"] = frame["value"].astype(float)
    return frame.reset_index(drop=True)


def collect(out: str | Path, experiment: Any, cells: Iterable[Any] | None = None,
            path: str | Path | None = None) -> pd.DataFrame:
    """Write ``results.csv`` (atomically) from the finished cells and return the table.

    NaN values are written as empty fields.
    """
    frame = results_frame(out, experiment, cells)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.10g")
    write_atomic(Path(path) if path else Path(out) / "results.csv", buf.getvalue().encode())
    return frame


def read_results(path: str | Path, experiment: Any | None = None) -> pd.DataFrame:
    """Read a ``results.csv`` back, checking its columns.

    Args:
        path: the file.
        experiment: the kind it must hold (default: the kind named in its ``kind`` column;
            a file written before kinds existed is recognised by its columns and read in
            today's).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: columns that are not the kind's.
    """
    from trustrec.bench.experiments import get_experiment

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    frame = pd.read_csv(path, dtype={"kind": str, "cell": str, "metric": str},
                        keep_default_na=False, na_values={"value": [""]})
    if "kind" not in frame.columns:  # written before experiment kinds
        from trustrec.bench.experiments import kinds

        for name in kinds():
            kind = get_experiment(name)
            if kind.is_legacy(list(frame.columns)):
                frame, experiment = kind.from_legacy(frame), experiment or kind
                frame.insert(0, "cell", "")  # older files have no cell ids
                frame.insert(0, "kind", kind.name)
                break
        else:
            raise DataFormatError(f"{path}: no 'kind' column, and its columns "
                                  f"{list(frame.columns)} are no known older results format")
    if experiment is None:
        kind = str(frame["kind"].iloc[0]) if len(frame) else "unlearning"
        experiment = get_experiment(kind, str(path))
    want = result_columns(experiment.axes)
    if list(frame.columns) != want:
        raise DataFormatError(f"{path}: columns are {list(frame.columns)}, expected {want}")
    return typed(frame, experiment)
