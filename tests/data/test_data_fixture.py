"""The ``ml100k_dir`` fixture as a fresh clone meets it: no shared folder.

Each test runs two real-data tests of this suite in a child pytest whose shared folder is
hidden (``TRUSTREC_TEST_SHARED``) and whose dataset cache is a temporary folder
(``TRUSTREC_DATA``). Nothing is downloaded: the cache is either pre-filled or every
source is made unreachable (a closed local proxy and package index, no pip configuration
files, links or caches).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Two tests that read every ML-100K file (shape, ids, user and item attributes).
REAL_DATA_TESTS = ("tests/data/test_data_loaders.py::test_ml100k_shape_and_numeric_id_order",
                   "tests/data/test_data_loaders.py::test_ml100k_attributes_aligned")
#: A local port nothing listens on: connections to it are refused at once.
CLOSED = "http://127.0.0.1:9"
#: Seconds a child pytest may take (measured: about 10 s on 2 busy cores).
CHILD_TIMEOUT_S = 300


def run_child(tmp_path: Path, cache: Path, offline: bool) -> subprocess.CompletedProcess[str]:
    """Run :data:`REAL_DATA_TESTS` in a child pytest without the shared folder."""
    env = {**os.environ, "TRUSTREC_TEST_SHARED": str(tmp_path / "no-shared"),
           "TRUSTREC_DATA": str(cache)}
    if offline:
        # no pip configuration (its files and PIP_* may name local wheels or mirrors)
        env = {k: v for k, v in env.items() if not k.upper().startswith("PIP_")}
        env.update({"https_proxy": CLOSED, "HTTPS_PROXY": CLOSED, "http_proxy": CLOSED,
                    "HTTP_PROXY": CLOSED, "PIP_CONFIG_FILE": os.devnull,
                    "PIP_INDEX_URL": f"{CLOSED}/simple", "PIP_PROXY": CLOSED,
                    "PIP_NO_CACHE_DIR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
         f"--basetemp={tmp_path / 'child'}", *REAL_DATA_TESTS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
        check=False)


def test_unreachable_data_fails_every_test_that_needs_it_and_skips_none(tmp_path):
    res = run_child(tmp_path, tmp_path / "empty-cache", offline=True)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "2 errors" in out and "passed" not in out, out[-3000:]
    assert "skipped" not in out.lower()
    for fragment in ("MovieLens-100K is needed by the tests and could not be had",
                     str(tmp_path / "no-shared" / "data" / "ml-100k"),
                     "sources tried", "files.grouplens.org", "recbole==1.2.1",
                     "To install it by hand"):
        assert fragment in out, fragment
    assert not (tmp_path / "empty-cache" / "ml-100k").exists()  # nothing half-installed


def test_the_cache_is_used_and_grouplens_files_are_converted(tmp_path, ml100k_dir,
                                                             grouplens_100k):
    """A cache that holds GroupLens's layout (what ``trustrec data fetch`` installs where
    GroupLens is reachable) serves the tests through atomic files written for the session,
    offline."""
    grouplens_100k(ml100k_dir, tmp_path / "cache" / "ml-100k")
    res = run_child(tmp_path, tmp_path / "cache", offline=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "2 passed" in out
    assert f"from the cache {tmp_path / 'cache' / 'ml-100k'}" in out  # the report header
    assert sorted(p.name for p in (tmp_path / "cache" / "ml-100k").iterdir()) == [
        "u.data", "u.item", "u.user"]  # the cache itself is left as it was
