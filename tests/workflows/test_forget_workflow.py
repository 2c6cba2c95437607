"""Deletion requests on real MovieLens-100K model directories: no request lost, nothing left.

Every test works on a copy of one small trained directory (BPR-MF, dim 8, 2 epochs): what
is checked is bookkeeping, locking and erasure, not model quality.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.errors import InvalidRequestError
from trustrec.store.ledger import Ledger
from trustrec.store.modeldir import ids_sha256
from trustrec.store.versions import version_name
from trustrec.workflows.forget import PHASES, apply_pending, forget, submit
from trustrec.workflows.model_dir import load_model_dir
from trustrec.workflows.train import train_model_dir

TINY = {"epochs": 2, "dim": 8, "eval_every": 1}
#: How long a subprocess may take (starting Python and torch on a busy 2-core machine).
SLOW = 300


@pytest.fixture(scope="module")
def source(ml100k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("src") / "model"
    train_model_dir(str(ml100k_dir), "bpr", out, model_config=TINY)
    return out


@pytest.fixture()
def model(source, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(source, dst, symlinks=True)
    return dst


def raw_rows(d: Path) -> dict[str, pd.DataFrame]:
    md = load_model_dir(d)
    u = md.unlearner
    frames = {"train": u.train_.to_frame(raw_ids=True), "test": md.test.to_frame(raw_ids=True)}
    if u.valid_ is not None:
        frames["valid"] = u.valid_.to_frame(raw_ids=True)
    return frames


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trustrec.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=SLOW,
                          env={**os.environ, **(env or {})})


# ---------------------------------------------------------------------------- no loss
@pytest.mark.slow  # six CLI processes at once: ~40 s on 2 busy cores
def test_concurrent_forgets_from_many_processes_are_all_honoured(model):
    """Six `trustrec forget` processes at once (the issue's lost-update scenario): every
    request is applied, by whichever process holds the lock, none is lost."""
    users = ["500", "600", "700", "33", "44", "55"]
    procs = [subprocess.Popen([sys.executable, "-m", "trustrec.cli", "forget",
                               "--model-dir", str(model), "--users", u],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for u in users]
    outs = [p.communicate(timeout=SLOW) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    with Ledger(model) as ledger:
        rows = ledger.rows()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"applied"}
    frames = raw_rows(model)
    for name, f in frames.items():
        assert not f["user"].isin(users).any(), name
    md = load_model_dir(model)
    assert not set(users) & set(md.unlearner.train_.user_ids.astype(str))
    # one history entry per batch, every request in exactly one batch
    batches = [h for h in md.meta["history"] if h["event"] == "forget"]
    applied = [r for h in batches for r in h["requests"]]
    assert sorted(applied) == sorted(r["request_id"] for r in rows)
    assert len(list((model / "receipts").glob("*.json"))) == 6
    assert [p.name for p in (model / "versions").iterdir()] == [version_name(model)]


#: The phase whose kill test runs in the fast tier (the new version is written, not yet
#: live: the next command must finish the swap and clean up); the others are slow (2-7 s
#: each on 2 busy cores).
FAST_PHASES = ("written",)


@pytest.mark.parametrize("phase", [p if p in FAST_PHASES else
                                   pytest.param(p, marks=pytest.mark.slow) for p in PHASES])
def test_kill_9_at_every_phase_leaves_old_or_new_and_the_next_command_finishes(
        model, phase):
    """kill -9 of a forget at each phase: the directory is the old or the new state (it
    loads and passes its manifest), and the next command applies the request and removes
    every leftover copy of the forgotten data."""
    before = version_name(model)
    sub = submit(model, users=["13"])
    code = ("import os, sys; from trustrec.workflows.forget import apply_pending\n"
            "apply_pending(sys.argv[1], hooks=lambda p: p == sys.argv[2] and "
            "os.kill(os.getpid(), 9))\n")
    res = subprocess.run([sys.executable, "-c", code, str(model), phase], timeout=SLOW,
                         capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    live = version_name(model)
    assert live in (before, f"v{int(before[1:]) + 1:06d}")
    state = load_model_dir(model)  # checks the live state's manifest
    gone = not (state.unlearner.train_.to_frame(raw_ids=True)["user"] == "13").any()
    assert gone == (live != before)
    settled = apply_pending(model)  # the next command
    with Ledger(model) as ledger:
        row = ledger.get(sub.row["request_id"])
    assert row["status"] == "applied", row
    assert (sub.row["request_id"] in settled) or phase == "receipted"
    for name, f in raw_rows(model).items():
        assert not (f["user"] == "13").any(), name
    assert [p.name for p in (model / "versions").iterdir()] == [version_name(model)]
    assert not list((model / "pending").iterdir())
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".model.")
                and p.name != ".model.lock"]


def test_same_idempotency_key_is_applied_once(model):
    first = forget(model, users=["21"], idempotency_key="ticket-4711")
    again = forget(model, users=["21"], idempotency_key="ticket-4711")
    assert first["created"] and not again["created"]
    assert again["request_id"] == first["request_id"]
    assert again["model_version"] == first["model_version"] == version_name(model)
    with Ledger(model) as ledger:
        assert ledger.counts() == {"applied": 1}


# ---------------------------------------------------------------------------- erasure
def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [*map(str, obj), *(s for v in obj.values() for s in _strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def every_value(d: Path) -> tuple[dict[str, set[str]], set[str], bytes]:
    """Every stored value of the directory: Parquet cells by column name (raw ids share
    their spelling across users and items, so ``user`` / ``item`` / ``raw_id`` columns are
    told apart by file), JSON keys and values and SQLite cells, and every file's bytes."""
    columns: dict[str, set[str]] = {}
    values: set[str] = set()
    raw = []
    for p in sorted(d.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        data = p.read_bytes()
        raw.append(data)
        if p.suffix == ".parquet":
            frame = pd.read_parquet(p)
            for col in frame.columns:
                key = {"user_ids": "user", "item_ids": "item"}.get(p.stem, col)
                columns.setdefault(key if col == "raw_id" else col, set()).update(
                    frame[col].dropna().astype(str))
        elif p.suffix == ".json" or p.name.endswith(".lock"):
            values |= set(_strings(json.loads(data)))
        elif p.name == "ledger.sqlite":
            con = sqlite3.connect(p)
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                for row in con.execute(f"SELECT * FROM {table}"):
                    values |= {v for v in row if isinstance(v, str)}
            con.close()
    return columns, values, b"".join(raw)


def test_no_file_reveals_the_forgotten_ids(model):
    """After forgetting users, an item with only a test row, and a pair that is a test row
    (both refused before), no file of the directory holds a forgotten raw id or its
    unsalted hash: Parquet, JSON, SQLite and raw bytes are searched."""
    frames = raw_rows(model)
    train_items = set(frames["train"]["item"]) | set(frames["valid"]["item"])
    test_only_items = sorted(set(frames["test"]["item"]) - train_items, key=int)
    assert test_only_items, "ML-100K has items whose only row is a test row"
    item = test_only_items[0]
    t = frames["test"]
    pair_row = t[(~t["user"].isin(["1", "2"])) & (t["item"] != item)].iloc[0]
    pair = (str(pair_row["user"]), str(pair_row["item"]))
    users = ["1", "2"]
    row = forget(model, users=users, items=[item], pairs=[pair])
    assert row["status"] == "applied"
    assert row["receipt"]["removed"]["test_rows"] >= 2
    forgotten = [*users, item]
    columns, values, raw = every_value(model)
    assert not set(users) & columns["user"], "a forgotten user id is still stored"
    assert item not in columns["item"], "the forgotten item id is still stored"
    for x in forgotten:  # nor in any JSON or SQLite value
        assert x not in values, f"raw id {x!r} in a JSON or SQLite value"
    assert f"{pair[0]}\t{pair[1]}" not in values
    hashes = [hashlib.sha256(x.encode()).hexdigest() for x in forgotten]
    hashes += [ids_sha256(users), ids_sha256([item]), ids_sha256([f"{pair[0]}\t{pair[1]}"])]
    hashes += [hashlib.md5(x.encode()).hexdigest() for x in forgotten]  # noqa: S324
    for h in hashes:
        assert h.encode() not in raw and h not in values
    # the pair's rows are gone although its user and item stay
    after = raw_rows(model)
    assert not ((after["test"]["user"] == pair[0]) & (after["test"]["item"] == pair[1])).any()
    assert (after["train"]["user"] == pair[0]).any()
    md = load_model_dir(model)
    attrs = md.unlearner.train_.user_attributes
    idx = [k for k, r in enumerate(md.unlearner.train_.user_ids) if r.startswith("forgotten:")]
    assert len(idx) == 2 and attrs.loc[idx].isna().all().all()


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_raw_ids_and_change_nothing(model, tmp_path):
    def snap() -> dict[str, bytes]:
        return {str(p.relative_to(model)): p.read_bytes() for p in model.rglob("*")
                if p.is_file()}

    before = snap()
    with pytest.raises(InvalidRequestError, match=r"duplicate user id\(s\) in the request: "
                                                  r"\['7'\]"):
        forget(model, users=["7", "8", "7"])
    with pytest.raises(InvalidRequestError, match=r"unknown user id\(s\) \['nobody'\]"):
        forget(model, users=["7", "nobody"])
    with pytest.raises(InvalidRequestError, match=r"pair\(s\) \[\('7', 'no-item'\)\]"):
        forget(model, pairs=[("7", "no-item")])
    with pytest.raises(InvalidRequestError, match="empty"):
        forget(model)
    assert snap() == before
    bad = tmp_path / "users.txt"
    bad.write_bytes(b"7\n8\xff\n")
    res = run_cli("forget", "--model-dir", model, "--users-file", bad)
    assert res.returncode == 2 and "users.txt" in res.stderr and "line 2" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert snap() == before


def test_training_anew_over_applied_deletions_is_refused(model, ml100k_dir):
    forget(model, users=["42"])
    from trustrec.errors import TrustrecError

    with pytest.raises(TrustrecError, match="bring the forgotten data back"):
        train_model_dir(str(ml100k_dir), "bpr", model, model_config=TINY, overwrite=True)


# ---------------------------------------------------------------------------- integrity
@pytest.mark.parametrize("damage", [pytest.param("drop-tensor", marks=pytest.mark.slow),
                                    pytest.param("truncate", marks=pytest.mark.slow),
                                    "edit-json"])  # ~5 s each (a CLI process)
def test_damaged_directory_is_a_one_line_error_naming_the_file(model, damage):
    from safetensors.torch import load_file, save_file

    live = model / "current"
    if damage == "drop-tensor":
        target = live / "model" / "model.safetensors"
        tensors = load_file(str(target))
        del tensors["item_bias"]
        save_file(tensors, str(target))
    elif damage == "truncate":
        target = live / "unlearner" / "data" / "train.parquet"
        target.write_bytes(target.read_bytes()[:-100])
    else:
        target = live / "trustrec.json"
        meta = json.loads(target.read_text())
        meta["seed"] = 1
        target.write_text(json.dumps(meta))
    res = run_cli("evaluate", "--model-dir", model)
    assert res.returncode == 2, res.stdout
    assert target.name in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_receipt_digest_matches_only_with_the_salt(model):
    row = forget(model, users=["3", "4"])
    data = b"u:3\nu:4\n"
    assert row["receipt"]["request"]["ids_digest"] == hashlib.sha256(
        bytes.fromhex(row["salt"]) + data).hexdigest()
    assert row["receipt"]["request"]["ids_digest"] != hashlib.sha256(data).hexdigest()
    salts = {row["salt"], forget(model, users=["5"])["salt"]}
    assert len(salts) == 2 and np.all([len(s) == 32 for s in salts])
