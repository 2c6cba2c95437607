"""Fetching known datasets: checksums, atomic installs, source fallback, no network."""

from __future__ import annotations

import hashlib
import importlib
import io
import urllib.error
import zipfile
from pathlib import Path

import pytest

from trustrec.data import load_dataset
from trustrec.errors import ChecksumError, DataFormatError, TrustrecError, UnknownNameError

F = importlib.import_module("trustrec.data.fetch")  # the package re-exports fetch()

U_DATA = b"1\t1\t5\t100\n2\t1\t3\t101\n2\t2\t4\t102\n"
U_USER = b"1|24|M|technician|85711\n2|53|F|other|94043\n"
ATOMIC = {
    "ml-100k.inter": b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     b"1\t1\t5\t100\n2\t1\t3\t101\n2\t2\t4\t102\n",
    "ml-100k.user": b"user_id:token\tage:token\tgender:token\toccupation:token\t"
                    b"zip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
    "ml-100k.item": b"item_id:token\tmovie_title:token_seq\n1\tA\n2\tB\n",
}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Every download and pip call fails as on an offline machine."""
    def offline(url, dest, **kw):
        raise urllib.error.URLError("offline (test)")

    def no_pip(req, dest, **kw):
        raise TrustrecError("pip download exited with 1: offline (test)")

    monkeypatch.setattr(F, "download", offline)
    monkeypatch.setattr(F, "_pip_download", no_pip)


def fake_wheel_pip(files: dict[str, bytes]):
    """A stand-in for ``_pip_download`` that writes a small fake RecBole wheel."""
    calls = []

    def _pip(requirement, dest, **kw):
        calls.append(requirement)
        members = {f"recbole/dataset_example/ml-100k/{k}": v for k, v in files.items()}
        members["recbole/__init__.py"] = b""
        return make_zip(Path(dest) / "recbole-1.2.1-py3-none-any.whl", members)

    _pip.calls = calls
    return _pip


# ---------------------------------------------------------------------------- catalog & cache
def test_catalog_entries_are_well_formed():
    for name, e in F.CATALOG.items():
        assert e.name == name and e.sources and e.layouts
        assert e.kind in ("interactions", "tabular")
        first = e.sources[0]
        if e.kind == "interactions":
            assert isinstance(first, F.ArchiveSource)
            assert first.url.startswith("https://files.grouplens.org/datasets/movielens/")
            assert len(first.sha256) == 64 and int(first.sha256, 16) >= 0
        else:  # the fair-classification tables: one pinned wheel, every file checksummed
            assert isinstance(first, F.WheelSource) and first.requirement == "fairness==0.1.8"
            assert set(first.sha256) == set(first.members.values())
            assert all(len(d) == 64 for d in first.sha256.values())
    wheel = F.CATALOG["ml-100k"].sources[1]
    assert wheel.requirement == "recbole==1.2.1"
    assert set(wheel.sha256) == {"ml-100k.inter", "ml-100k.user", "ml-100k.item"}


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TRUSTREC_DATA", str(tmp_path / "env"))
    assert F.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert F.cache_dir() == tmp_path / "env"
    monkeypatch.delenv("TRUSTREC_DATA")
    assert F.cache_dir() == Path.home() / ".cache" / "trustrec"


def test_unknown_name(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'ml-1m'"):
        F.fetch("ml-1n", tmp_path)


# ---------------------------------------------------------------------------- extraction
def test_extract_members_only_named_and_checked(tmp_path):
    arc = make_zip(tmp_path / "a.zip", {"d/a.txt": b"A", "d/b.txt": b"B", "../evil": b"x"})
    got = F.extract_members(arc, {"d/a.txt": "a.txt"}, tmp_path / "out", {"a.txt": sha(b"A")})
    assert got == {"a.txt": sha(b"A")}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".trustrec.json", "a.txt"]
    assert not (tmp_path / "evil").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_extract_checksum_mismatch_installs_nothing(tmp_path):
    arc = make_zip(tmp_path / "a.zip", {"a.txt": b"A", "b.txt": b"B"})
    with pytest.raises(ChecksumError, match="b.txt"):
        F.extract_members(arc, {"a.txt": "a.txt", "b.txt": "b.txt"}, tmp_path / "out",
                          {"b.txt": sha(b"not B")})
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_extract_into_existing_folder_replaces_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"old")
    (out / "mine.txt").write_bytes(b"kept")
    arc = make_zip(tmp_path / "a.zip", {"a.txt": b"new"})
    F.extract_members(arc, {"a.txt": "a.txt"}, out)
    assert (out / "a.txt").read_bytes() == b"new" and (out / "mine.txt").read_bytes() == b"kept"


def test_extract_bad_archive(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="not a zip"):
        F.extract_members(bad, {"a": "a"}, tmp_path / "out")
    arc = make_zip(tmp_path / "a.zip", {"a.txt": b"A"})
    with pytest.raises(DataFormatError, match="missing member"):
        F.extract_members(arc, {"nope.txt": "n.txt"}, tmp_path / "out")


# ---------------------------------------------------------------------------- sources
def test_archive_source_via_file_url_then_cached(monkeypatch, tmp_path):
    arc = make_zip(tmp_path / "src" / "toy.zip",
                   {"toy/u.data": U_DATA, "toy/u.user": U_USER, "toy/README": b"r"})
    digest = sha(arc.read_bytes())
    entry = F.CatalogEntry(
        name="toy", description="", homepage="",
        sources=(F.ArchiveSource(url=arc.as_uri(), sha256=digest,
                                 md5=hashlib.md5(arc.read_bytes()).hexdigest(),
                                 members={"toy/u.data": "u.data", "toy/u.user": "u.user"}),),
        layouts=(("u.data",),), manual="put it in {cache}/toy")
    monkeypatch.setitem(F.CATALOG, "toy", entry)
    cache = tmp_path / "cache"
    folder = F.fetch("toy", cache, progress=False)
    assert folder == cache / "toy"
    assert (folder / "u.data").read_bytes() == U_DATA
    assert (cache / "downloads" / "toy.zip").is_file()
    ds = load_dataset("toy", cache)
    assert ds.name == "toy" and ds.n_interactions == 3
    assert ds.user_attributes["occupation"].tolist() == ["technician", "other"]

    # present and checksummed: no download at all
    def boom(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(F, "download", boom)
    assert F.fetch("toy", cache, progress=False) == folder
    # a corrupted file is restored from the kept (verified) archive, still without download
    (folder / "u.data").write_bytes(b"1\t1\t1\t1\n")
    assert F.fetch("toy", cache, progress=False) == folder
    assert (folder / "u.data").read_bytes() == U_DATA


def test_archive_checksum_mismatch_is_recorded(monkeypatch, tmp_path):
    arc = make_zip(tmp_path / "toy.zip", {"toy/u.data": U_DATA})
    entry = F.CatalogEntry(
        name="toy", description="", homepage="",
        sources=(F.ArchiveSource(url=arc.as_uri(), sha256="0" * 64,
                                 members={"toy/u.data": "u.data"}),),
        layouts=(("u.data",),), manual="put u.data in {cache}/toy")
    monkeypatch.setitem(F.CATALOG, "toy", entry)
    with pytest.raises(TrustrecError) as err:
        F.fetch("toy", tmp_path / "cache", progress=False)
    msg = str(err.value)
    assert "ChecksumError" in msg and arc.as_uri() in msg
    assert f"put u.data in {tmp_path / 'cache'}/toy" in msg
    assert not (tmp_path / "cache" / "toy").exists()
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # no partial files left


def test_ml100k_falls_back_to_the_wheel(monkeypatch, no_network, tmp_path):
    pip = fake_wheel_pip(ATOMIC)
    monkeypatch.setattr(F, "_pip_download", pip)
    real = F.CATALOG["ml-100k"]
    wheel = F.WheelSource(requirement=real.sources[1].requirement,
                          members=real.sources[1].members,
                          sha256={k: sha(v) for k, v in ATOMIC.items()})
    monkeypatch.setitem(F.CATALOG, "ml-100k",
                        F.CatalogEntry(real.name, real.description, real.homepage,
                                       (real.sources[0], wheel), real.layouts, real.manual))
    folder = F.fetch("ml-100k", tmp_path, progress=False)
    assert pip.calls == ["recbole==1.2.1"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*ATOMIC, ".trustrec.json"])
    assert not list(tmp_path.glob(".pip-*"))  # temporary wheel folder removed
    ds = load_dataset("ml-100k", tmp_path, download=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    F.fetch("ml-100k", tmp_path, progress=False)
    assert len(pip.calls) == 1  # cached: pip not run again


def test_all_sources_fail_lists_each_and_manual_steps(monkeypatch, no_network, tmp_path):
    # a wheel whose files do not match the real checksums
    monkeypatch.setattr(F, "_pip_download", fake_wheel_pip(ATOMIC))
    with pytest.raises(TrustrecError) as err:
        F.fetch("ml-100k", tmp_path, progress=False)
    msg = str(err.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip: URLError" in msg
    assert "pip download recbole==1.2.1" in msg and "ChecksumError" in msg
    assert f"unzip it in {tmp_path}" in msg
    assert not (tmp_path / "ml-100k").exists()

    with pytest.raises(TrustrecError) as err:
        load_dataset("ml-1m", tmp_path)
    msg = str(err.value)
    assert "ml-1m.zip" in msg and f"{tmp_path}/ml-1m/ratings.dat" in msg


def test_hand_placed_files_are_used(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_bytes(b"1::1::5::1\n")
    (d / "users.dat").write_bytes(b"1::F::1::0::1\n")
    (d / "movies.dat").write_bytes(b"1::T::Drama\n")
    assert F.fetch("ml-1m", tmp_path, progress=False) == d
    assert load_dataset("ml-1m", tmp_path).n_interactions == 1


def test_download_is_atomic(tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(b"x" * 3_000_000)
    out = F.download(src.as_uri(), tmp_path / "d" / "s.bin", progress=False)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(urllib.error.URLError):
        F.download((tmp_path / "missing").as_uri(), tmp_path / "d" / "m.bin", progress=False)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["s.bin"]
