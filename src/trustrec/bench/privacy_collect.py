"""Gather finished privacy cells into one long table, ``results.csv``.

Every finished cell folder (its ``run.json`` says ``"status": "done"``) contributes its
``audit.csv`` rows (attribute, view, users, attacker, metric, value) and one row per entry
of its ``metrics.json`` (utility, seconds and the threat model's user counts, with empty
attribute, view, users and attacker), each with the cell's axes from its
``config.json``. Unfinished or half-written cells are skipped.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.bench.collect import finished_cell_dirs, read_json
from trustrec.bench.files import write_atomic
from trustrec.bench.privacy_spec import PrivacyCell
from trustrec.errors import DataFormatError

#: Columns of the privacy ``results.csv``, in order. ``view`` is the attacked features
#: (``released`` user table or ``fold_in``), ``users`` the users the attack was scored on
#: (``held-out``, ``seen`` or ``all``). Utility and time rows leave ``attribute``,
#: ``view``, ``users`` and ``attacker`` empty.
RESULT_COLUMNS = ["dataset", "model", "method", "attributes", "seed", "attribute", "view",
                  "users", "attacker", "metric", "value"]
AXES = RESULT_COLUMNS[:5]
#: Columns of a cell's ``audit.csv``.
AUDIT_COLUMNS = ["attribute", "view", "users", "attacker", "metric", "value"]
#: Text columns that are empty on utility rows.
_LABEL_COLUMNS = ("attribute", "view", "users", "attacker")
RUN_JSON, CONFIG_JSON, METRICS_JSON, AUDIT_CSV = ("run.json", "config.json", "metrics.json",
                                                  "audit.csv")
#: Folders under the output folder that hold shared state or plots, not cells.
PRIVATE_DIRS = ("_base", "plots")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A table as CSV bytes (no index, 10 significant digits, NaN as an empty field)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.10g")
    return buf.getvalue().encode()


def read_audit(path: Path) -> pd.DataFrame:
    """Read a cell's ``audit.csv``, checking its columns."""
    frame = pd.read_csv(path, dtype={c: str for c in AUDIT_COLUMNS if c != "value"},
                        keep_default_na=False, na_values={"value": [""]})
    if list(frame.columns) != AUDIT_COLUMNS:
        raise DataFormatError(f"{path}: columns are {list(frame.columns)}, expected "
                              f"{AUDIT_COLUMNS}")
    return frame


def privacy_cell_rows(folder: Path) -> pd.DataFrame:
    """Long-format rows (:data:`RESULT_COLUMNS`) of one finished cell."""
    cfg = read_json(folder / CONFIG_JSON)
    try:
        axes = {a: cfg["cell"][a] for a in AXES}
    except (KeyError, TypeError) as exc:
        raise DataFormatError(f"{folder / CONFIG_JSON}: no cell axes ({exc})") from None
    metrics = read_json(folder / METRICS_JSON)
    util = pd.DataFrame({**{c: "" for c in _LABEL_COLUMNS}, "metric": list(metrics),
                         "value": [np.nan if v is None else float(v)
                                   for v in metrics.values()]})
    frame = pd.concat([read_audit(folder / AUDIT_CSV), util], ignore_index=True)
    for a in reversed(AXES):
        frame.insert(0, a, axes[a])
    return frame[RESULT_COLUMNS]


def privacy_results_frame(out: str | Path, cells: Iterable[PrivacyCell] | None = None
                          ) -> pd.DataFrame:
    """The long results table of the finished cells (columns :data:`RESULT_COLUMNS`)."""
    parts = [privacy_cell_rows(d) for d in finished_cell_dirs(out, cells, PRIVATE_DIRS)]
    frame = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=RESULT_COLUMNS))
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("dataset", "model", "method", "attributes", "metric"):
        frame[col] = frame[col].astype(str)
    for col in _LABEL_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    frame["seed"] = frame["seed"].astype(int)
    frame["value"] = frame["value"].astype(float)
    return frame.reset_index(drop=True)


def collect_privacy(out: str | Path, cells: Iterable[PrivacyCell] | None = None
                    ) -> pd.DataFrame:
    """Write ``<out>/results.csv`` (atomically) from the finished cells and return it.

    NaN values and the empty attribute/view/users/attacker of utility rows are written as
    empty fields.
    """
    frame = privacy_results_frame(out, cells)
    write_atomic(Path(out) / "results.csv", csv_bytes(frame))
    return frame


def read_privacy_results(path: str | Path) -> pd.DataFrame:
    """Read a privacy ``results.csv`` back, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    frame = pd.read_csv(path, dtype={c: str for c in RESULT_COLUMNS
                                     if c not in ("seed", "value")}, keep_default_na=False,
                        na_values={"value": [""]})
    if list(frame.columns) != RESULT_COLUMNS:
        raise DataFormatError(f"{path}: columns are {list(frame.columns)}, expected "
                              f"{RESULT_COLUMNS}")
    return _typed(frame)
