"""Loaders that turn files into a :class:`Dataset`.

Formats:

* RecBole atomic files: ``{name}.inter`` (+ optional ``{name}.user`` / ``{name}.item``),
  tab-separated, first line ``field:type`` (types ``token``, ``token_seq``, ``float``,
  ``float_seq``); fields ``user_id``, ``item_id`` and optionally ``timestamp``, ``rating``.
* MovieLens 100K as distributed by GroupLens (``u.data``, ``u.user``, ``u.item``).
* MovieLens 1M as distributed by GroupLens (``ratings.dat``, ``users.dat``, ``movies.dat``).
* CSV / TSV / Parquet tables with a column mapping.

Every loader returns a Dataset with contiguous indices. Raw ids are kept as strings; when
every raw id of a kind is an integer they are indexed in numeric order (ML-100K user ``"1"``
is index 0), otherwise in string order. The id space holds the users and items that have at
least one interaction after the optional ``min_rating`` filter; attribute tables have one
row per index (missing attributes are NaN), all values as strings.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data import _parse as P
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, DataFormatError, UnknownNameError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")

#: ML-1M occupation codes → names, from the ML-1M README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
#: ML-1M age codes (kept as these strings in the attribute table) → the range they stand for.
ML1M_AGE_GROUPS = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44",
                   "45": "45-49", "50": "50-55", "56": "56+"}
#: ML-100K genre flags in ``u.item`` order (from ``u.genre``).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)

ROLES = ("user", "item", "timestamp", "rating")
_ROLE_ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid", "movie_id", "movieid"),
    "timestamp": ("timestamp", "time", "ts", "datetime"),
    "rating": ("rating", "score"),
}


# ---------------------------------------------------------------------------- assembly
def _interactions(t: P.Table, user: str, item: str, timestamp: str | None,
                  rating: str | None, min_rating: float | None) -> dict:
    """Raw id columns, timestamps and ratings of an interaction table, filtered."""
    u = P.nonempty(t, user)
    i = P.nonempty(t, item)
    ts = P.integers(t, timestamp) if timestamp else np.zeros(len(u), np.int64)
    r = P.numbers(t, rating).astype(np.float32) if rating else None
    if min_rating is not None:
        if r is None:
            raise ConfigError(f"{t.path}: min_rating={min_rating} given but the file has no "
                              "rating column")
        keep = r >= min_rating
        u, i, ts, r = u[keep], i[keep], ts[keep], r[keep]
    if len(u) == 0:
        cond = f" with rating >= {min_rating}" if min_rating is not None else ""
        raise DataFormatError(f"{t.path}: no interactions{cond}")
    return {"users": u, "items": i, "timestamps": ts, "ratings": r}


def _attributes(t: P.Table | None, id_field: str, ids: np.ndarray) -> pd.DataFrame:
    """One row per index of ``ids`` from an attribute table keyed by ``id_field``."""
    if t is None:
        return pd.DataFrame(index=pd.RangeIndex(len(ids)))
    key = P.nonempty(t, id_field)
    dup = key.duplicated().to_numpy()
    if dup.any():
        k = int(np.argmax(dup))
        raise t.fail(k, id_field, f"duplicate id {key.iloc[k]!r}")
    frame = t.frame.drop(columns=[id_field])
    frame.index = pd.Index(key.to_numpy(dtype=str))
    return frame.reindex(pd.Index(ids)).reset_index(drop=True)


def _build(name: str, inter: dict, user_table: P.Table | None, user_field: str,
           item_table: P.Table | None, item_field: str) -> Dataset:
    users, user_ids = P.index_ids(inter["users"])
    items, item_ids = P.index_ids(inter["items"])
    return Dataset(
        name=name, users=users, items=items, timestamps=inter["timestamps"],
        n_users=len(user_ids), n_items=len(item_ids), user_ids=user_ids, item_ids=item_ids,
        user_attributes=_attributes(user_table, user_field, user_ids),
        item_attributes=_attributes(item_table, item_field, item_ids),
        ratings=inter["ratings"],
    )


# ---------------------------------------------------------------------------- RecBole atomic
def _read_atomic(path: Path) -> P.Table:
    """Read a RecBole atomic file (tab-separated, header line ``name:type``)."""
    data = P.read_bytes(path)
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = first.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: line 1: header is not valid UTF-8") from None
    if not header.strip():
        raise DataFormatError(f"{path}: line 1: empty; expected a header such as "
                              "'user_id:token<TAB>item_id:token<TAB>timestamp:float'")
    cols: list[str] = []
    for j, h in enumerate(header.split("\t")):
        nm, colon, typ = h.partition(":")
        if not colon or not nm:
            raise DataFormatError(f"{path}: line 1, field {j + 1}: header {h!r} is not "
                                  "'name:type' (RecBole atomic format)")
        if typ not in ATOMIC_TYPES:
            raise DataFormatError(f"{path}: line 1, field {j + 1}: unknown type {typ!r} in "
                                  f"{h!r} (expected one of {', '.join(ATOMIC_TYPES)})")
        if nm in cols:
            raise DataFormatError(f"{path}: line 1, field {j + 1}: duplicate column {nm!r}")
        cols.append(nm)
    return P.read_delimited(path, "\t", cols, header_lines=1, data=data)


def load_recbole(directory: str | Path, name: str | None = None, *,
                 min_rating: float | None = None) -> Dataset:
    """Load RecBole atomic files ``{name}.inter`` (+ optional ``.user`` / ``.item``).

    Args:
        directory: folder holding the files.
        name: dataset name and file stem; defaults to the folder's name.
        min_rating: keep only interactions with ``rating >= min_rating`` (default: all).

    Returns:
        The dataset; ``user_attributes`` / ``item_attributes`` hold every column of the
        ``.user`` / ``.item`` files except the id.

    Raises:
        FileNotFoundError: no ``{name}.inter``.
        DataFormatError: a malformed file (names the file, line and field).
    """
    directory = Path(directory)
    name = name or directory.name
    inter_t = _read_atomic(directory / f"{name}.inter")
    cols = inter_t.frame.columns
    inter = _interactions(inter_t, "user_id", "item_id",
                          "timestamp" if "timestamp" in cols else None,
                          "rating" if "rating" in cols else None, min_rating)
    ufile, ifile = directory / f"{name}.user", directory / f"{name}.item"
    return _build(name, inter,
                  _read_atomic(ufile) if ufile.is_file() else None, "user_id",
                  _read_atomic(ifile) if ifile.is_file() else None, "item_id")


# ---------------------------------------------------------------------------- MovieLens raw
def load_movielens_100k(directory: str | Path, *, min_rating: float | None = None,
                        name: str = "ml-100k") -> Dataset:
    """Load MovieLens 100K as distributed by GroupLens.

    Reads ``u.data`` (``user item rating timestamp``, tab-separated), and when present
    ``u.user`` (``id|age|gender|occupation|zip``) and ``u.item`` (pipe-separated, latin-1:
    id, title, release date, video release date, IMDb URL, 19 genre flags; the flags become a
    ``genres`` column of ``|``-joined names).

    Args:
        directory: folder holding the files (e.g. the unzipped ``ml-100k/``).
        min_rating: keep only interactions with ``rating >= min_rating`` (default: all).
        name: the dataset's name.
    """
    directory = Path(directory)
    t = P.read_delimited(directory / "u.data", "\t", ["user_id", "item_id", "rating",
                                                      "timestamp"], encoding="latin-1")
    inter = _interactions(t, "user_id", "item_id", "timestamp", "rating", min_rating)
    ut = None
    if (directory / "u.user").is_file():
        ut = P.read_delimited(directory / "u.user", "|",
                              ["user_id", "age", "gender", "occupation", "zip_code"],
                              encoding="latin-1")
    it = None
    if (directory / "u.item").is_file():
        flags = [f"g{k}" for k in range(len(ML100K_GENRES))]
        it = P.read_delimited(directory / "u.item", "|",
                              ["item_id", "title", "release_date", "video_release_date",
                               "imdb_url", *flags], encoding="latin-1")
        f = it.frame[flags]
        bad = ~f.isin(["0", "1"]).to_numpy()
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise it.fail(int(r), ML100K_GENRES[c], f"genre flag {f.iat[r, c]!r} is not 0 or 1")
        joined = (f == "1").astype(object).dot(pd.Series([g + "|" for g in ML100K_GENRES],
                                                          index=flags))
        frame = it.frame.drop(columns=flags)
        frame["genres"] = np.asarray(joined.astype(str).str.rstrip("|"), dtype=object)
        it = P.Table(it.path, frame, it.lines)
    return _build(name, inter, ut, "user_id", it, "item_id")


def load_movielens_1m(directory: str | Path, *, min_rating: float | None = None,
                      name: str = "ml-1m") -> Dataset:
    """Load MovieLens 1M as distributed by GroupLens.

    Reads ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), and when present
    ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``; occupation codes 0-20
    become the README's names, see :data:`ML1M_OCCUPATIONS`; age codes stay as the codes
    ``"1"``, ``"18"``, ... ``"56"``, see :data:`ML1M_AGE_GROUPS`) and ``movies.dat``
    (``MovieID::Title::Genres``, latin-1).

    Args:
        directory: folder holding the files (e.g. the unzipped ``ml-1m/``).
        min_rating: keep only interactions with ``rating >= min_rating`` (default: all).
        name: the dataset's name.
    """
    directory = Path(directory)
    t = P.read_delimited(directory / "ratings.dat", "::",
                         ["user_id", "item_id", "rating", "timestamp"], encoding="latin-1")
    inter = _interactions(t, "user_id", "item_id", "timestamp", "rating", min_rating)
    ut = None
    if (directory / "users.dat").is_file():
        ut = P.read_delimited(directory / "users.dat", "::",
                              ["user_id", "gender", "age", "occupation", "zip_code"],
                              encoding="latin-1")
        age = ut.frame["age"]
        bad = ~age.isin(list(ML1M_AGE_GROUPS)).to_numpy()
        if bad.any():
            k = int(np.argmax(bad))
            raise ut.fail(k, "age", f"{age.iloc[k]!r} is not an ML-1M age code "
                                    f"({', '.join(ML1M_AGE_GROUPS)})")
        occ = ut.frame["occupation"]
        code = pd.to_numeric(occ, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isin(code, np.arange(len(ML1M_OCCUPATIONS)))
        if bad.any():
            k = int(np.argmax(bad))
            raise ut.fail(k, "occupation", f"{occ.iloc[k]!r} is not an occupation code 0-20")
        frame = ut.frame.copy()
        frame["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[code.astype(np.int64)]
        frame["occupation"] = frame["occupation"].astype(str)
        ut = P.Table(ut.path, frame, ut.lines)
    it = None
    if (directory / "movies.dat").is_file():
        it = P.read_delimited(directory / "movies.dat", "::", ["item_id", "title", "genres"],
                              encoding="latin-1")
    return _build(name, inter, ut, "user_id", it, "item_id")


# ---------------------------------------------------------------------------- CSV / Parquet
def _resolve_columns(path: Path, present: list[str],
                     columns: Mapping[str, str] | None) -> dict[str, str]:
    """role → file column, from a mapping file column → role (or by common names)."""
    if columns is None:
        lower = {c.lower(): c for c in present}
        found = {}
        for role, aliases in _ROLE_ALIASES.items():
            hit = next((lower[a] for a in aliases if a in lower), None)
            if hit is not None:
                found[role] = hit
    else:
        found = {}
        for col, role in columns.items():
            if role not in ROLES:
                close = difflib.get_close_matches(str(role), ROLES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"column mapping {col!r}: unknown role {role!r}{hint}; roles "
                                  f"are {', '.join(ROLES)}")
            if role in found:
                raise ConfigError(f"column mapping: role {role!r} given twice "
                                  f"({found[role]!r} and {col!r})")
            if col not in present:
                close = difflib.get_close_matches(str(col), present, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataFormatError(f"{path}: no column {col!r}{hint}; columns are "
                                      f"{', '.join(present)}")
            found[role] = col
    for role in ("user", "item"):
        if role not in found:
            raise DataFormatError(
                f"{path}: no {role} column (columns are {', '.join(present)}); pass a mapping "
                f"such as columns={{'<file column>': {role!r}, ...}}")
    return found


def _read_parquet(path: Path, wanted: list[str] | None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=wanted)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataFormatError(f"{path}: not a readable Parquet file: {exc}") from None


def _parquet_table(path: Path, frame: pd.DataFrame) -> P.Table:
    """Parquet columns as strings (integral floats as integers, datetimes as epoch s)."""
    out = {}
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            valid = s.notna().to_numpy()
            secs = np.zeros(len(s), np.int64)
            secs[valid] = s[valid].to_numpy(dtype="datetime64[s]").astype(np.int64)
            s = pd.Series(np.where(valid, secs.astype(str), ""), index=s.index)
        elif pd.api.types.is_float_dtype(s.dtype):
            arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
            fin = np.isfinite(arr)
            if fin.all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2**62).all():
                s = pd.Series(arr.astype(np.int64), index=s.index)
        out[c] = s.astype(str).where(s.notna(), "")
    return P.Table(path, pd.DataFrame(out), np.arange(len(frame), dtype=np.int64) + 1,
                   unit="row")


def load_table(path: str | Path, columns: Mapping[str, str] | None = None, *,
               name: str | None = None, sep: str | None = None,
               min_rating: float | None = None) -> Dataset:
    """Load interactions from a CSV/TSV file (with a header line) or a Parquet file.

    Args:
        path: ``.csv``, ``.tsv``/``.tab``/``.txt`` (tab-separated) or ``.parquet``/``.pq``.
        columns: mapping from the file's column names to roles ``user``, ``item``,
            ``timestamp``, ``rating`` (the last two optional), e.g.
            ``{"userId": "user", "movieId": "item", "timestamp": "timestamp"}``. Other file
            columns are ignored. Default: found by common names (``user``/``user_id``/...,
            case-insensitive).
        name: dataset name; defaults to the file's stem.
        sep: field separator for text files; default by extension.
        min_rating: keep only interactions with ``rating >= min_rating`` (default: all).

    Raises:
        ConfigError: a mapping to an unknown role, or a role mapped twice.
        DataFormatError: a missing column, a bad value (names the file, line/row and field).
    """
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
        frame = _read_parquet(path, None)
        present = [str(c) for c in frame.columns]
        roles = _resolve_columns(path, present, columns)
        t = _parquet_table(path, frame[list(roles.values())])
    else:
        if sep is None:
            sep = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","
        t = P.read_csv_with_header(path, sep)
        roles = _resolve_columns(path, list(t.frame.columns), columns)
    inter = _interactions(t, roles["user"], roles["item"], roles.get("timestamp"),
                          roles.get("rating"), min_rating)
    return _build(name or path.stem, inter, None, "", None, "")


# ---------------------------------------------------------------------------- any source
def load_path(path: str | Path, *, min_rating: float | None = None) -> Dataset:
    """Load a dataset from a folder (format sniffed) or a single file.

    A folder is read as RecBole atomic files when it holds ``{folder}.inter`` or exactly one
    ``*.inter``; as MovieLens 100K when it holds ``u.data``; as MovieLens 1M when it holds
    ``ratings.dat``. A file is read by its name: ``*.inter``, ``u.data``, ``ratings.dat``,
    ``*.csv``/``*.tsv``/``*.parquet``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / f"{path.name}.inter").is_file():
            return load_recbole(path, path.name, min_rating=min_rating)
        if (path / "u.data").is_file():
            return load_movielens_100k(path, min_rating=min_rating)
        if (path / "ratings.dat").is_file():
            return load_movielens_1m(path, min_rating=min_rating)
        inters = sorted(path.glob("*.inter"))
        if len(inters) == 1:
            return load_recbole(path, inters[0].stem, min_rating=min_rating)
        if len(inters) > 1:
            raise DataFormatError(f"{path}: several RecBole .inter files "
                                  f"({', '.join(p.name for p in inters)}); pass one of them")
        raise DataFormatError(f"{path}: no dataset files found (looked for <name>.inter, "
                              "u.data, ratings.dat)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return load_recbole(path.parent, path.stem, min_rating=min_rating)
    if path.name == "u.data":
        return load_movielens_100k(path.parent, min_rating=min_rating)
    if path.name == "ratings.dat":
        return load_movielens_1m(path.parent, min_rating=min_rating)
    if suffix in (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq"):
        return load_table(path, min_rating=min_rating)
    raise DataFormatError(f"{path}: unknown file type (expected .inter, u.data, ratings.dat, "
                          ".csv, .tsv or .parquet)")


def load_dataset(name_or_path: str | Path, data_dir: str | Path | None = None, *,
                 download: bool = True, min_rating: float | None = None,
                 progress: bool = True) -> Dataset:
    """Load a known dataset by name, or any dataset by path.

    Args:
        name_or_path: a known name (``"ml-100k"``, ``"ml-1m"``; case-insensitive), a folder
            (format sniffed, see :func:`load_path`) or a file. A known name wins over a
            folder of that name in the working directory (write ``./ml-100k`` for that).
        data_dir: cache folder for known datasets (default ``$TRUSTREC_DATA`` or
            ``~/.cache/trustrec``).
        download: fetch a known dataset that is not cached yet; if false, a missing dataset
            is an error saying how to get it.
        min_rating: keep only interactions with ``rating >= min_rating`` (default: all).
        progress: show download progress.

    Raises:
        UnknownNameError: neither a known name nor an existing path.
        TrustrecError: a known dataset could not be fetched (lists every source tried).
    """
    # the package re-exports the function ``fetch``, which hides the module of that name
    F = importlib.import_module("trustrec.data.fetch")

    text = str(name_or_path)
    key = text.lower()
    if key in F.CATALOG:
        if F.CATALOG[key].kind != "interactions":
            raise ConfigError(f"{key!r} is a {F.CATALOG[key].kind} dataset, not user-item "
                              "interactions: load it with trustrec.data.tabular.load_tabular")
        folder = (F.fetch(key, data_dir, progress=progress) if download
                  else F.cached(key, data_dir))
        ds = load_path(folder, min_rating=min_rating)
        return ds if ds.name == key else _renamed(ds, key)
    path = Path(text).expanduser()
    if path.exists():
        return load_path(path, min_rating=min_rating)
    if os.sep in text or "/" in text or path.suffix:
        raise FileNotFoundError(f"{path}: no such file or directory")
    known = sorted(F.CATALOG)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownNameError(f"unknown dataset {text!r}{hint}; known datasets: "
                           f"{', '.join(known)}; or pass a path to a folder or file")


def _renamed(ds: Dataset, name: str) -> Dataset:
    from dataclasses import replace

    return replace(ds, name=name)
