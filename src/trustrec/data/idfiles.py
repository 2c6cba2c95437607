"""Raw ids of a deletion request from text files: one id per line, or user,item pairs.

Blank lines and ``#`` comments are skipped; a byte sequence that is not UTF-8, or a line
without the expected fields, is an error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from trustrec.errors import DataFormatError, InvalidRequestError


def text_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a byte sequence that is not UTF-8 (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = []
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            out.append((n, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}, line {n}: not UTF-8 text (byte "
                                  f"{raw[exc.start:exc.start + 1]!r} at column "
                                  f"{exc.start + 1})") from None
    return out


def read_id_file(path: str | Path) -> list[str]:
    """Raw ids, one per line; blank lines and lines starting with ``#`` are skipped."""
    out = []
    for _, line in text_lines(path):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s)
    if not out:
        raise InvalidRequestError(f"{path}: no ids in the file")
    return out


def read_pairs_file(path: str | Path) -> list[tuple[str, str]]:
    """(user, item) raw-id pairs from a CSV or TSV file: two fields per line.

    A first line ``user,item`` (or ``user_id``/``item_id``, any case) is a header and is
    skipped; blank lines and lines starting with ``#`` too. The separator is a tab when the
    line has one, else a comma.

    Raises:
        DataFormatError: a line without exactly two non-empty fields (names file and line).
    """
    path = Path(path)
    pairs = []
    for n, line in text_lines(path):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = [f.strip() for f in s.split("\t" if "\t" in s else ",")]
        if len(fields) != 2 or not all(fields):
            raise DataFormatError(f"{path}, line {n}: expected two fields 'user,item', "
                                  f"got {line!r}")
        if not pairs and fields[0].lower() in ("user", "user_id", "userid") \
                and fields[1].lower() in ("item", "item_id", "itemid"):
            continue
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise InvalidRequestError(f"{path}: no (user, item) pairs in the file")
    return pairs
