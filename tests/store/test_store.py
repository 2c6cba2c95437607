"""The model-directory store: lock, versions, manifest and request ledger (no model needed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trustrec.errors import ConfigError, IntegrityError
from trustrec.store.ledger import Ledger, canonical_ids
from trustrec.store.lock import LockTimeout, directory_lock, lock_path
from trustrec.store.manifest import check_manifest, write_manifest
from trustrec.store.versions import (
    collect_garbage,
    is_versioned,
    live_version,
    new_version,
    version_name,
)


# ---------------------------------------------------------------------------- lock
def test_lock_serialises_and_times_out(tmp_path):
    d = tmp_path / "m"
    with directory_lock(d, purpose="test") as got:
        assert got["broke_stale"] is None
        holder = json.loads(lock_path(d).read_text())
        assert holder["held"] and holder["pid"] == os.getpid()
        # another process cannot take it
        code = ("import sys; from trustrec.store.lock import directory_lock, LockTimeout\n"
                "try:\n with directory_lock(sys.argv[1], timeout=0.3, log=lambda m: None):"
                "\n  sys.exit(0)\nexcept LockTimeout as e:\n print(e); sys.exit(3)\n")
        res = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 3 and f"locked by pid {os.getpid()}" in res.stdout
    assert not json.loads(lock_path(d).read_text())["held"]
    with pytest.raises(LockTimeout):  # flock is per open file: a second open waits too
        with directory_lock(d), directory_lock(d, timeout=0, log=lambda m: None):
            pass


def test_lock_of_a_killed_holder_is_broken_and_said_so(tmp_path):
    d = tmp_path / "m"
    code = ("import sys, time; from trustrec.store.lock import directory_lock\n"
            "with directory_lock(sys.argv[1], purpose='forget'):\n"
            " print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    said = []
    with directory_lock(d, timeout=5, log=said.append) as got:
        assert got["broke_stale"]["pid"] == proc.pid
    assert any("broke a stale lock" in m and str(proc.pid) in m for m in said)


# ---------------------------------------------------------------------------- versions
def write_state(d: Path, text: str) -> None:
    with new_version(d) as tmp:
        (tmp / "trustrec.json").write_text(text)
        (tmp / "unlearner").mkdir()
        (tmp / "unlearner" / "rows.txt").write_text(text)
        write_manifest(tmp)


def test_versions_swap_atomically_and_old_states_are_collected(tmp_path):
    d = tmp_path / "m"
    write_state(d, "one")
    assert is_versioned(d) and version_name(d) == "v000001"
    assert (d / "trustrec.json").read_text() == "one"  # the stable path reads the live state
    write_state(d, "two")
    assert version_name(d) == "v000002" and (d / "unlearner" / "rows.txt").read_text() == "two"
    assert (d / "versions" / "v000001").is_dir()  # until collected
    assert collect_garbage(d) == ["v000001"]
    assert sorted(p.name for p in (d / "versions").iterdir()) == ["v000002"]
    # a failing write leaves the live state and no half-written folder
    with pytest.raises(RuntimeError), new_version(d) as tmp:
        (tmp / "trustrec.json").write_text("three")
        raise RuntimeError("disk full")
    assert (d / "trustrec.json").read_text() == "two"
    assert sorted(p.name for p in (d / "versions").iterdir()) == ["v000002"]


def test_a_crash_between_write_and_swap_leaves_the_old_state(tmp_path):
    d = tmp_path / "m"
    write_state(d, "one")
    code = ("import os, sys; from pathlib import Path\n"
            "import trustrec.store.versions as v\n"
            "v._point = lambda *a: os.kill(os.getpid(), 9)\n"
            "with v.new_version(sys.argv[1]) as tmp:\n"
            " (Path(tmp) / 'trustrec.json').write_text('two')\n")
    res = subprocess.run([sys.executable, "-c", code, str(d)], timeout=60)
    assert res.returncode == -signal.SIGKILL
    assert (d / "trustrec.json").read_text() == "one"
    assert len(list((d / "versions").iterdir())) == 2  # the orphan, until collected
    collect_garbage(d)
    assert [p.name for p in (d / "versions").iterdir()] == ["v000001"]


def test_legacy_directory_is_converted_by_the_first_write(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "trustrec.json").write_text("legacy")
    (d / "forget_report.json").write_text("{}")
    old = tmp_path / ".m.old-abc"  # what an interrupted legacy swap left beside it
    old.mkdir()
    (old / "train.parquet").write_text("forgotten rows")
    assert not is_versioned(d) and version_name(d) == "legacy"
    write_state(d, "new")
    assert (d / "versions" / "v000001" / "trustrec.json").read_text() == "legacy"
    assert (d / "trustrec.json").read_text() == "new"
    assert ".m.old-abc" in collect_garbage(d) and not old.exists()


# ---------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("damage", ["edit", "truncate", "remove", "add"])
def test_manifest_names_the_damaged_file(tmp_path, damage):
    d = tmp_path / "m"
    write_state(d, "payload" * 10)
    live = live_version(d)
    assert check_manifest(live, required=True)
    target = live / "unlearner" / "rows.txt"
    if damage == "edit":
        target.write_text("payload" * 9 + "PAYLOAD")
    elif damage == "truncate":
        target.write_text("payload")
    elif damage == "remove":
        target.unlink()
    else:
        target = live / "unlearner" / "extra.txt"
        target.write_text("x")
    with pytest.raises(IntegrityError, match=str(target)) as err:
        check_manifest(live)
    assert "\n" not in str(err.value)
    with pytest.raises(IntegrityError, match="MANIFEST.json: missing"):
        (live / "MANIFEST.json").unlink()
        check_manifest(live, required=True)


# ---------------------------------------------------------------------------- ledger
def exercise_ledger(ledger: Ledger, directory: Path) -> None:
    row, created, salt = ledger.receive(["u1", "u2"], [("u3", "i1")], [],
                                        idempotency_key="k-1")
    assert created and row["status"] == "received" and salt and len(salt) == 32
    again, created2, salt2 = ledger.receive(["u9"], [], [], idempotency_key="k-1")
    assert not created2 and again["request_id"] == row["request_id"] and salt2 is None
    pending = ledger.pending()
    assert [p.users for p in pending] == [["u1", "u2"]] and pending[0].pairs == [("u3", "i1")]
    ledger.mark_applying([row["request_id"]], "batch-1")
    ledger.mark_applied(row["request_id"], "v000002", {"ok": True})
    ledger.mark_applied(row["request_id"], "v000003", {"ok": False})  # never overwritten
    got = ledger.get(row["request_id"])
    assert got["status"] == "applied" and got["model_version"] == "v000002"
    assert got["receipt"] == {"ok": True}
    receipt = directory / "receipts" / f"{row['request_id']}.json"
    assert json.loads(receipt.read_text()) == {"ok": True}
    assert not list((directory / "pending").iterdir())  # the ids are gone
    other, _, _ = ledger.receive([], [], ["i7"])
    ledger.mark_rejected(other["request_id"], "rejected: unknown item id(s)")
    assert ledger.counts() == {"applied": 1, "rejected": 1}
    assert [r["status"] for r in ledger.rows(status="rejected")] == ["rejected"]
    with pytest.raises(ConfigError, match="status"):
        ledger.rows(status="done")


def test_sqlite_ledger_keeps_no_id(tmp_path):
    with Ledger(tmp_path) as ledger:
        exercise_ledger(ledger, tmp_path)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.sqlite*"))
    for token in (b"u1", b"u2", b"u3", b"i1", b"i7"):
        assert token not in raw
    rows = sqlite3.connect(tmp_path / "ledger.sqlite").execute(
        "SELECT * FROM requests").fetchall()
    assert len(rows) == 2
    with pytest.raises(ConfigError, match="URL"):
        Ledger(tmp_path, "mysql://x")


def test_digest_is_keyed_when_a_key_is_set(tmp_path, monkeypatch):
    import hashlib
    import hmac

    monkeypatch.setenv("TRUSTREC_RECEIPT_KEY", "a secret kept elsewhere")
    with Ledger(tmp_path) as ledger:
        row, _, salt = ledger.receive(["1"], [], [])
    data = canonical_ids(["1"], [], [])
    assert salt is None and row["digest_kind"] == "hmac-sha256"
    assert row["ids_digest"] == hmac.new(b"a secret kept elsewhere", data,
                                         hashlib.sha256).hexdigest()
    assert row["ids_digest"] != hashlib.sha256(data).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server: $TRUSTREC_TEST_PG_URL (CI starts one), else a throwaway
    cluster of the local server binaries (initdb / pg_ctl)."""
    url = os.environ.get("TRUSTREC_TEST_PG_URL")
    if url:
        yield url
        return
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL: set TRUSTREC_TEST_PG_URL or install the server")
    root = Path(tempfile.mkdtemp(prefix="trustrec-pg-"))
    data, port = root / "data", _free_port()
    user = ["-U", "postgres"]
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        subprocess.run(["useradd", "-M", "trustrecpg"], capture_output=True)
        shutil.chown(root, "trustrecpg")
        as_postgres = ["runuser", "-u", "trustrecpg", "--"]
    subprocess.run([*as_postgres, initdb, "-D", str(data), *user, "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-w", "start",
                    "-l", str(root / "log")], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_ledger_has_the_same_behaviour(tmp_path, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS requests")
    with Ledger(tmp_path, postgres_url) as ledger:
        assert ledger.backend == "postgresql"
        exercise_ledger(ledger, tmp_path)
    assert not (tmp_path / "ledger.sqlite").exists()
