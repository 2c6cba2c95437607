"""Atomic file and directory writes, and JSON-ready conversion of numpy-laden objects.

The one implementation behind ``trustrec.models.base.atomic_write_bytes``,
``trustrec.bench.files.write_atomic``, ``trustrec.unlearn.base.jsonable`` and the
directory swaps of saved unlearners and model directories.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def now_iso() -> str:
    """The current UTC time as ISO 8601, to the second (the time stamp of every record)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename.

    A reader sees either the old file or the complete new one, never a partial write. The
    file gets the usual permissions (``0o666`` minus the umask), unlike a bare ``mkstemp``.

    Args:
        path: the file to (re)write; missing parent folders are created.
        data: the content (``str`` is encoded as UTF-8).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename)."""
    write_atomic(path, data)


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the complete directory ``tmp`` to ``target``; an old ``target`` goes only after.

    If the final rename fails, the old ``target`` is put back.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old / "dir")
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old / "dir", target)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def to_jsonable(obj: Any, *, finite: bool = False) -> Any:
    """A JSON-ready copy of ``obj``: numpy scalars/arrays (also nested) made Python, paths str.

    Args:
        obj: a value, possibly nested in dicts, lists and tuples (dict keys become str).
        finite: turn non-finite floats (NaN, ±inf) into ``None`` so the JSON is strict.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, finite=finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, finite=finite) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), finite=finite)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if finite and not math.isfinite(f) else f
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json_text(obj: Any) -> str:
    """Indented JSON text of a JSON-ready object (non-finite floats become null)."""
    buf = io.StringIO()
    json.dump(to_jsonable(obj, finite=True), buf, indent=2)
    return buf.getvalue() + "\n"
