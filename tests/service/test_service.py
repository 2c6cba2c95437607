"""The deletion service over HTTP (FastAPI test client) on a real MovieLens-100K directory."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trustrec.service.app import create_app
from trustrec.store.versions import version_name
from trustrec.workflows.model_dir import load_model_dir
from trustrec.workflows.train import train_model_dir

TOKEN = "a-long-random-service-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def source(ml100k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("svc") / "model"
    train_model_dir(str(ml100k_dir), "bpr", out,
                    model_config={"epochs": 2, "dim": 8, "eval_every": 1})
    return out


@pytest.fixture()
def model(source, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(source, dst, symlinks=True)
    return dst


def wait_applied(client: TestClient, ids: list[str], timeout: float = 120) -> list[dict]:
    t0 = time.monotonic()
    while True:
        rows = [client.get(f"/v1/requests/{i}", headers=AUTH).json() for i in ids]
        if all(r["status"] in ("applied", "rejected") for r in rows):
            return rows
        assert time.monotonic() - t0 < timeout, rows
        time.sleep(0.1)


def test_auth_validation_and_batches(model):
    before = version_name(model)
    app = create_app(model, token=TOKEN, batch_delay=0.3, max_wait=5)
    with TestClient(app) as client:
        assert client.get("/v1/health").json()["status"] == "ok"
        # wrong or missing token: 401, nothing recorded
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
            res = client.post("/v1/requests", json={"users": ["10"]}, headers=headers)
            assert res.status_code == 401
            assert client.get("/v1/ledger", headers=headers).status_code == 401
        assert client.get("/v1/ledger", headers=AUTH).json()["counts"] == {}
        # malformed bodies: 422 naming the field
        res = client.post("/v1/requests", json={"user": ["10"]}, headers=AUTH)
        assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "user"]
        res = client.post("/v1/requests", json={"pairs": [["10"]]}, headers=AUTH)
        assert res.status_code == 422 and "pairs" in json.dumps(res.json())
        res = client.post("/v1/requests", json={"users": ["10", "no-such-user"]}, headers=AUTH)
        assert res.status_code == 422 and "no-such-user" in res.json()["detail"]
        res = client.post("/v1/requests", json={}, headers=AUTH)
        assert res.status_code == 422 and "empty" in res.json()["detail"]
        # accepted requests, one of them twice under one idempotency key
        a = client.post("/v1/requests", json={"users": ["10"], "idempotency_key": "t1"},
                        headers=AUTH)
        b = client.post("/v1/requests", json={"users": ["11", "12"]}, headers=AUTH)
        again = client.post("/v1/requests", json={"users": ["10"], "idempotency_key": "t1"},
                            headers=AUTH)
        assert a.status_code == b.status_code == again.status_code == 202
        assert again.json()["request_id"] == a.json()["request_id"]
        assert again.json()["created"] is False and again.json()["salt"] is None
        assert len(a.json()["salt"]) == 32
        rows = wait_applied(client, [a.json()["request_id"], b.json()["request_id"]])
        assert {r["status"] for r in rows} == {"applied"}
        assert rows[0]["batch_id"] == rows[1]["batch_id"]  # one batch, one retrain
        assert rows[0]["receipt"]["verification"]["passed"] is True
        ledger = client.get("/v1/ledger", headers=AUTH).json()
        assert ledger["counts"] == {"applied": 2}
        text = json.dumps(ledger)
        assert '"10"' not in text and '"11"' not in text  # no raw id in the ledger
        assert client.get("/v1/requests/nope", headers=AUTH).status_code == 404
        assert client.get("/v1/health").json()["model_version"] == f"v{int(before[1:]) + 1:06d}"
    users = load_model_dir(model).unlearner.train_.user_ids.astype(str)
    assert not {"10", "11", "12"} & set(users)


@pytest.mark.slow  # ~9 s on 2 busy cores
def test_load_of_concurrent_requests_is_honoured_exactly_once(model):
    """A bounded load test on loopback: 200 requests from 16 client threads at once, half
    of them re-sent with the same idempotency key; each distinct request is applied
    exactly once (the numbers of the benchmark script, benchmarks/service_load.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from service_load import run_load

    result = run_load(model, n_requests=200, threads=16, duplicate_share=0.5,
                      batch_delay=0.5, timeout=600)
    assert result["distinct_requests"] == 200
    assert result["applied"] == 200 and result["rejected"] == 0
    assert result["ledger_rows"] == 200  # a re-sent request was not recorded twice
    assert result["users_left"] == 0
    assert result["throughput_per_s"] > 0 and result["latency_ms"]["p99"] > 0
