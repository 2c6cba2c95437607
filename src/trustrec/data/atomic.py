"""MovieLens 100K as RecBole atomic files, written from GroupLens's distribution.

The package index's copy of ML-100K (RecBole 1.2.1's ``ml-100k.{inter,user,item}``) and
GroupLens's archive (``u.data``, ``u.user``, ``u.item``) hold the same interactions and
users; :func:`movielens_100k_to_atomic` turns the second into the first's layout, so that
code written against the atomic files works whichever source filled the cache:

* ``ml-100k.inter``: ``user_id:token item_id:token rating:float timestamp:float``, the rows
  of ``u.data`` in their order;
* ``ml-100k.user``: ``user_id:token age:token gender:token occupation:token
  zip_code:token``, the rows of ``u.user``;
* ``ml-100k.item``: ``item_id:token movie_title:token_seq release_year:token
  class:token_seq``, from ``u.item`` (latin-1) as RecBole derived it: a title ``"Name
  (1995)"`` splits at its last ``" ("`` into ``movie_title`` ``"Name"`` and
  ``release_year`` ``"1995"`` (``"... (1995) (V)"`` gives ``"V"``, as in RecBole's file);
  ``class`` is the item's genres joined by spaces, in ``u.genre`` order. A title without a
  parenthesised suffix keeps its whole text and takes the year of its release date, or
  none (RecBole's file spells item 267's missing title and year ``"unkonwn"``; here they
  stay ``"unknown"`` and empty).

The interaction and user files come out byte for byte as RecBole ships them (the tests
check their sha256 against the catalog's); the item file differs at most in item 267.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from trustrec.data.loaders import ML100K_GENRES
from trustrec.errors import DataFormatError

#: The atomic files of ML-100K and their header lines.
ML100K_ATOMIC_HEADERS: dict[str, str] = {
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
    "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
}
_RAW_FIELDS = {"u.data": 4, "u.user": 5, "u.item": 5 + len(ML100K_GENRES)}


def _rows(path: Path, sep: str, n_fields: int, encoding: str) -> list[list[str]]:
    """The fields of every non-empty line of a GroupLens file (checked for their count)."""
    try:
        text = path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    rows = []
    for k, line in enumerate(text.split("\n"), 1):  # not splitlines(): latin-1 has U+0085
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != n_fields:
            raise DataFormatError(f"{path}: line {k}: {len(fields)} fields, expected "
                                  f"{n_fields}")
        if any("\t" in f for f in fields) and sep != "\t":
            raise DataFormatError(f"{path}: line {k}: a tab inside a field")
        rows.append(fields)
    if not rows:
        raise DataFormatError(f"{path}: no rows")
    return rows


def _title_and_year(title: str, release_date: str) -> tuple[str, str]:
    """RecBole's split of a GroupLens title into the name and the last parenthesised part."""
    title = title.strip()
    cut = title.rfind(" (")
    if title.endswith(")") and cut > 0:
        return title[:cut], title[cut + 2:-1]
    year = release_date.strip()[-4:]
    return title, year if year.isdigit() else ""


def movielens_100k_to_atomic(raw_dir: str | Path, dest: str | Path) -> Path:
    """Write ``ml-100k.{inter,user,item}`` from GroupLens's ``u.data``, ``u.user``, ``u.item``.

    The files are written into a temporary folder beside ``dest``, which is then renamed
    to ``dest``; an existing ``dest`` is an error (nothing is overwritten).

    Args:
        raw_dir: folder of the unzipped GroupLens archive (e.g. the cache's ``ml-100k/``).
        dest: the folder to create.

    Returns:
        ``dest``, holding the three atomic files (read them with
        :func:`~trustrec.data.loaders.load_recbole` and name ``"ml-100k"``).

    Raises:
        FileNotFoundError: one of the three GroupLens files is missing.
        FileExistsError: ``dest`` exists.
        DataFormatError: a line with the wrong number of fields, or a genre flag that is
            not 0 or 1 (names the file and line).
    """
    raw_dir, dest = Path(raw_dir), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists")
    data = _rows(raw_dir / "u.data", "\t", _RAW_FIELDS["u.data"], "latin-1")
    users = _rows(raw_dir / "u.user", "|", _RAW_FIELDS["u.user"], "latin-1")
    items = _rows(raw_dir / "u.item", "|", _RAW_FIELDS["u.item"], "latin-1")
    item_lines = []
    for k, (item, title, date, _video, _url, *flags) in enumerate(items, 1):
        if any(f not in ("0", "1") for f in flags):
            raise DataFormatError(f"{raw_dir / 'u.item'}: line {k}: a genre flag is not 0 "
                                  "or 1")
        name, year = _title_and_year(title, date)
        genres = " ".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1")
        item_lines.append("\t".join((item, name, year, genres)))
    body = {"inter": ["\t".join(r) for r in data], "user": ["\t".join(r) for r in users],
            "item": item_lines}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        for ext, header in ML100K_ATOMIC_HEADERS.items():
            text = "\n".join([header, *body[ext]]) + "\n"
            (tmp / f"ml-100k.{ext}").write_text(text, encoding="utf-8", newline="\n")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
