"""Reading delimited text with errors that name the file, the line and the field.

The fast path is pandas' C parser. Before it runs, the number of fields on every line is
counted on the raw bytes (vectorised), so a short, long or truncated line is reported with
its 1-based line number as a text editor shows it. Values are then converted column by
column; a bad value is reported with its line too.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trustrec.errors import DataFormatError

_INT_ID = re.compile(r"[+-]?\d{1,18}")


@dataclass(frozen=True, eq=False)
class Table:
    """Parsed rows of one file, every column a string column.

    Attributes:
        path: the file read.
        frame: one row per data record; columns named as requested.
        lines: 1-based line number (or row number, for Parquet) of each row.
        unit: ``"line"`` for text files, ``"row"`` for Parquet.
    """

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray
    unit: str = "line"

    def where(self, k: int, field: str | None = None) -> str:
        """``"<file>: line N, field 'x'"`` for row ``k``."""
        at = f"{self.path}: {self.unit} {int(self.lines[k])}"
        return f"{at}, field {field!r}" if field is not None else at

    def fail(self, k: int, field: str | None, message: str) -> DataFormatError:
        """A DataFormatError about row ``k`` (and ``field``)."""
        return DataFormatError(f"{self.where(k, field)}: {message}")

    def column(self, field: str) -> pd.Series:
        """A column, or a DataFormatError naming the file and the columns it has."""
        if field not in self.frame.columns:
            have = ", ".join(map(str, self.frame.columns))
            raise DataFormatError(f"{self.path}: missing column {field!r} (columns: {have})")
        return self.frame[field]

    def subset(self, mask: np.ndarray) -> Table:
        """Rows where ``mask`` is true (line numbers kept)."""
        return Table(self.path, self.frame[mask].reset_index(drop=True), self.lines[mask],
                     self.unit)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file is a FileNotFoundError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return path.read_bytes()


def _line_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newline positions, and start and length (without ``\\r\\n``) of every line."""
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    if len(buf) and buf[-1] == 10:  # nothing after the final newline
        starts, ends = starts[:-1], ends[:-1]
    lengths = ends - starts
    has = lengths > 0
    cr = np.zeros(len(ends), dtype=bool)
    cr[has] = buf[ends[has] - 1] == 13
    return nl, starts, lengths - cr


def check_field_counts(path: Path, data: bytes, sep: bytes, names: list[str],
                       header_lines: int) -> np.ndarray:
    """Check that every non-blank data line has ``len(names)`` fields.

    Args:
        path: the file (for messages).
        data: its bytes (a single-byte separator).
        sep: the one-byte separator.
        names: the expected field names.
        header_lines: lines before the first data line.

    Returns:
        1-based line numbers of the non-blank data lines, in order.

    Raises:
        DataFormatError: naming the first line with a wrong number of fields.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    nl, _, lengths = _line_spans(buf)
    n_lines = len(lengths)
    sep_line = np.searchsorted(nl, np.flatnonzero(buf == sep[0]))
    fields = np.bincount(sep_line, minlength=n_lines)[:n_lines] + 1
    is_data = np.arange(n_lines) >= header_lines
    blank = lengths == 0
    bad = np.flatnonzero(is_data & ~blank & (fields != len(names)))
    if len(bad):
        k = int(bad[0])
        hint = ""
        if fields[k] < len(names) and k == n_lines - 1:
            hint = " (the file looks truncated)"
        shown = "\\t" if sep == b"\t" else sep.decode()
        raise DataFormatError(
            f"{path}: line {k + 1}: expected {len(names)} fields ({', '.join(names)}) "
            f"separated by {shown!r}, found {int(fields[k])}{hint}")
    return np.flatnonzero(is_data & ~blank) + 1


def _decode_error(path: Path, data: bytes, exc: UnicodeDecodeError, encoding: str) -> None:
    try:  # the parser's offsets are relative to a chunk: find the file offset again
        data.decode(encoding)
        pos = exc.start
    except UnicodeDecodeError as whole:
        pos = whole.start
    line = data.count(b"\n", 0, pos) + 1
    raise DataFormatError(f"{path}: line {line}: bytes that are not valid {encoding.upper()} "
                          f"(re-save the file as {encoding.upper()})") from None


def read_delimited(path: Path, sep: str, names: list[str], *, header_lines: int = 0,
                   encoding: str = "utf-8", data: bytes | None = None) -> Table:
    """Read a delimited file with no quoting into a :class:`Table` of strings.

    Args:
        path: the file.
        sep: the field separator (one or more characters, e.g. ``"\\t"`` or ``"::"``).
        names: the field names, one per field; every data line must have exactly these.
        header_lines: lines to skip at the top (a header already checked by the caller).
        encoding: text encoding of the file.
        data: the file's bytes if already read.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: a line with a wrong number of fields, or undecodable bytes.
    """
    if data is None:
        data = read_bytes(path)
    raw_sep = sep.encode("ascii")
    if len(raw_sep) > 1:  # the C parser takes one-byte separators: swap in an unused byte
        one = next((b for b in (b"\t", b"\x1f", b"\x1e", b"\x01") if b not in data), None)
        if one is None:
            raise DataFormatError(f"{path}: cannot parse: separator {sep!r} plus control bytes")
        data = data.replace(raw_sep, one)
        raw_sep = one
    lines = check_field_counts(path, data, raw_sep, names, header_lines)
    try:
        frame = pd.read_csv(
            io.BytesIO(data), sep=raw_sep.decode(), header=None, names=names,
            skiprows=header_lines, dtype=str, na_filter=False, quoting=csv.QUOTE_NONE,
            skip_blank_lines=True, encoding=encoding, engine="c")
    except UnicodeDecodeError as exc:
        _decode_error(path, data, exc, encoding)
        raise  # pragma: no cover - _decode_error always raises
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot parse: {exc}") from None
    if len(frame) != len(lines):
        raise DataFormatError(f"{path}: found {len(frame)} records on {len(lines)} non-blank "
                              "lines (stray carriage returns or whitespace-only lines?)")
    return Table(path, frame, lines)


_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv_with_header(path: Path, sep: str, *, encoding: str = "utf-8") -> Table:
    """Read a CSV/TSV file whose first line names the columns.

    Files without quote characters get the exact per-line field check of
    :func:`read_delimited`; quoted files are parsed with CSV quoting (line numbers then
    assume one record per line).
    """
    data = read_bytes(path)
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header_text = first.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        _decode_error(path, data, exc, encoding)
    if not header_text.strip():
        raise DataFormatError(f"{path}: line 1: empty; expected a header naming the columns")
    if b'"' not in data:
        names = header_text.split(sep)
        if len(set(names)) != len(names):
            raise DataFormatError(f"{path}: line 1: duplicate column names in {names}")
        return read_delimited(path, sep, names, header_lines=1, encoding=encoding, data=data)
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=sep, header=0, dtype=str, na_filter=False,
                            skip_blank_lines=False, encoding=encoding, engine="c")
    except UnicodeDecodeError as exc:
        _decode_error(path, data, exc, encoding)
        raise  # pragma: no cover
    except pd.errors.ParserError as exc:
        m = _PANDAS_LINE.search(str(exc))
        if m:
            raise DataFormatError(f"{path}: line {m.group(2)}: expected {m.group(1)} fields, "
                                  f"found {m.group(3)}") from None
        raise DataFormatError(f"{path}: cannot parse: {exc}") from None
    frame.columns = [str(c).lstrip("\ufeff") for c in frame.columns]
    lines = np.arange(len(frame), dtype=np.int64) + 2
    blank = (frame == "").all(axis=1).to_numpy()
    t = Table(path, frame, lines)
    return t.subset(~blank) if blank.any() else t


# ---------------------------------------------------------------------------- values
def nonempty(t: Table, field: str) -> pd.Series:
    """The column, or an error naming the first row where it is empty."""
    s = t.column(field)
    empty = (s == "").to_numpy()
    if empty.any():
        raise t.fail(int(np.argmax(empty)), field, "empty value")
    return s


def _cast(s: pd.Series, typ: pa.DataType) -> np.ndarray | None:
    """Fast exact cast of a string column with Arrow; None if any value does not parse."""
    try:
        arr = pa.array(s.array if isinstance(s.array, pd.arrays.ArrowStringArray)
                       else s.to_numpy(dtype=object), type=pa.string())
        return pc.cast(arr, typ).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return None


def _first_bad(t: Table, field: str, s: pd.Series, arr: np.ndarray | None) -> DataFormatError:
    if arr is None:
        arr = np.asarray(pd.to_numeric(s, errors="coerce"), dtype=np.float64)
    k = int(np.argmax(~np.isfinite(arr)))
    return t.fail(k, field, f"{s.iloc[k]!r} is not a number")


def numbers(t: Table, field: str) -> np.ndarray:
    """The column as float64; a non-numeric or non-finite value is an error naming it."""
    s = t.column(field)
    arr = _cast(s, pa.float64())
    if arr is None or not np.isfinite(arr).all():
        raise _first_bad(t, field, s, arr)
    return arr


def integers(t: Table, field: str) -> np.ndarray:
    """The column as int64 (fractional values are floored)."""
    s = t.column(field)
    arr = _cast(s, pa.int64())
    if arr is not None:
        return arr.astype(np.int64, copy=False)
    arr = _cast(s, pa.float64())
    if arr is None or not (np.isfinite(arr) & (np.abs(arr) < 2.0**63)).all():
        if arr is not None:
            arr = np.where(np.abs(arr) < 2.0**63, arr, np.nan)
        raise _first_bad(t, field, s, arr)
    return np.floor(arr).astype(np.int64)


def index_ids(raw: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous indices for raw ids.

    When every distinct raw id is an integer (``[+-]?digits``), ids are ordered numerically
    (so ``"2"`` comes before ``"10"``; equal numbers such as ``"01"`` and ``"1"`` stay distinct
    and are ordered as strings); otherwise they are ordered as strings (code points).

    Returns:
        ``(codes, ids)``: int32 index per value and the raw id (str) per index.
    """
    codes, uniques = pd.factorize(pd.Series(raw, copy=False), sort=False)
    uniq = np.asarray(uniques, dtype=str)
    if len(uniq) and pd.Series(uniq).str.fullmatch(_INT_ID.pattern).all():
        order = np.lexsort((uniq, uniq.astype(np.int64)))
    else:
        order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes].astype(np.int32), uniq[order]
