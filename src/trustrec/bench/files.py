"""Atomic file writes for benchmark outputs (readable like any normally created file)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.fileio import to_jsonable, write_atomic

__all__ = ["write_atomic", "write_json", "write_parquet"]


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null)."""
    return write_atomic(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def write_parquet(path: str | Path, frame: pd.DataFrame) -> Path:
    """Atomically write a DataFrame as Parquet (no index)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return write_atomic(path, buf.getvalue())


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    return to_jsonable(obj, finite=True)
