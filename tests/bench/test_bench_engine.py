"""Parallel execution: results do not depend on the engine; stages, resume, failures, errors.

A tiny real grid on MovieLens-100K (BPR with 2 epochs, retrain + SISA, core users, 2 seeds)
runs three times: in-process (workers = 1), on 2 local processes and on a local Ray
instance with 2 CPUs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.bench import run_bench, spec_from_mapping
from trustrec.bench import stages as S
from trustrec.bench.collect import read_results
from trustrec.bench.engine import ENGINES, import_ray, open_engine
from trustrec.bench.experiments.unlearning import Unlearning, UnlearningContext
from trustrec.cli import app
from trustrec.errors import ConfigError, TrustrecError, UnknownNameError

FAST = {"bpr": {"epochs": 2, "dim": 8, "eval_every": 1, "patience": 1}}
CELLS = [f"ml-100k/bpr/{m}/core/p0.05/seed{s}" for s in (0, 1) for m in ("retrain", "sisa")]


def tiny_spec(ml100k_dir, out, **extra):
    values = {"datasets": [str(ml100k_dir)], "models": ["bpr"],
              "methods": ["retrain", "sisa"], "selections": ["core"], "ratios": [0.05],
              "seeds": [0, 1], "out": str(out), "model_configs": FAST,
              "method_configs": {"sisa": {"n_shards": 2}}}
    values.update(extra)
    return spec_from_mapping(values)


def quality(frame: pd.DataFrame) -> pd.Series:
    """Every metric except timings (and how many timed runs they took), indexed by the
    cell's axes and the metric."""
    keep = ~frame["metric"].str.contains("seconds|speedup|repeats")
    return frame[keep].set_index(list(frame.columns[:-1]))["value"].sort_index()


@pytest.fixture(scope="module")
def runs(ml100k_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    out = {}
    for name, extra in (("serial", {"workers": 1}), ("local", {"workers": 2}),
                        ("ray", {"workers": 2, "engine": "ray"})):
        spec = tiny_spec(ml100k_dir, root / name, **extra)
        out[name] = (spec, run_bench(spec, quiet=True, stop_on_error=True))
    return out


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.slow
def test_metrics_do_not_depend_on_engine(runs, engine):
    serial = quality(runs["serial"][1].results)
    other = quality(runs[engine][1].results)
    assert len(serial) > 100 and serial.index.equals(other.index)
    np.testing.assert_array_equal(other.to_numpy(), serial.to_numpy())
    _, result = runs[engine]
    assert [c.cell.id for c in result.cells] == CELLS
    assert [c.status for c in result.cells] == ["done"] * 4
    for cid in CELLS:
        run = json.loads((result.out / cid / "run.json").read_text())
        assert run["status"] == "done"
    # a retrain cell is timed against itself and agrees with its group's reference
    v = result.results.set_index(["method", "seed", "metric"])["value"]
    for seed in (0, 1):
        assert v[("retrain", seed, "speedup_vs_retrain")] == pytest.approx(1.0)
        assert v[("retrain", seed, "overlap@20_vs_retrain")] == pytest.approx(1.0)


@pytest.mark.slow
def test_workers_ran_in_other_processes(runs):
    import os

    pids = {json.loads((runs["local"][1].out / cid / "run.json").read_text())["pid"]
            for cid in CELLS}
    assert os.getpid() not in pids
    serial = {json.loads((runs["serial"][1].out / cid / "run.json").read_text())["pid"]
              for cid in CELLS}
    assert serial == {os.getpid()}


@pytest.mark.slow
def test_killed_parallel_run_resumes(runs, ml100k_dir):
    spec, result = runs["local"]
    out = result.out
    old = quality(read_results(out / "results.csv"))
    stamp = (out / CELLS[0] / "run.json").stat().st_mtime_ns
    # killed mid-way: a cell without run.json, a learned state without its marker
    (out / CELLS[3] / "run.json").unlink()
    learned = out / "_learned" / "ml-100k" / "bpr" / "sisa" / "seed1"
    (learned / "state.json").unlink()
    ctx = UnlearningContext(spec)
    stages = Unlearning().stages(ctx, [c for c in spec.cells() if c.id == CELLS[3]])
    assert [(s.name, s.keys) for s in stages] == [("learn", [["ml-100k", "bpr", "sisa", 1]]),
                                                   ("reference", [])]
    again = run_bench(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped"] * 3 + ["done"]
    assert (out / CELLS[0] / "run.json").stat().st_mtime_ns == stamp
    assert json.loads((learned / "state.json").read_text())["status"] == "done"
    new = quality(read_results(out / "results.csv"))
    np.testing.assert_array_equal(new.to_numpy(), old.to_numpy())


def test_stages_learn_every_state_then_one_reference_per_group(ml100k_dir, tmp_path):
    spec = tiny_spec(ml100k_dir, tmp_path / "p")
    learn, reference = Unlearning().stages(UnlearningContext(spec), spec.cells())
    assert learn.name == "learn" and reference.name == "reference"
    assert sorted(map(tuple, learn.keys)) == [("ml-100k", "bpr", m, s)
                                             for m in ("retrain", "sisa") for s in (0, 1)]
    assert [(k["method"], k["seed"]) for k in reference.keys] == [("retrain", 0),
                                                                 ("retrain", 1)]
    # without retrain in the grid, its learned state and the references are still staged
    spec = tiny_spec(ml100k_dir, tmp_path / "q", methods=["sisa"])
    learn, reference = Unlearning().stages(UnlearningContext(spec), spec.cells())
    assert ["ml-100k", "bpr", "retrain", 0] in learn.keys
    assert [k["method"] for k in reference.keys] == ["retrain", "retrain"]


class InlineEngine:
    """Runs tasks in this process, so that monkeypatched failures reach them."""

    workers = 1

    def map(self, fn, spec, keys):
        for i, key in enumerate(keys):
            yield i, fn(spec, key)

    def close(self):
        pass


@pytest.mark.slow
def test_failed_learned_state_fails_its_cells_without_rerunning(ml100k_dir, tmp_path,
                                                               monkeypatch):
    calls = []
    real = UnlearningContext.learned

    def learned(self, dataset, model, method, seed):
        calls.append((method, seed))
        if method == "sisa" and seed == 1:
            raise RuntimeError("boom (test)")
        return real(self, dataset, model, method, seed)

    monkeypatch.setattr(UnlearningContext, "learned", learned)
    monkeypatch.setattr(S, "open_engine", lambda name, workers: InlineEngine())
    monkeypatch.setattr(Unlearning, "warm_up", lambda self, ctx, stages, pending: None)
    S._context.cache_clear()
    lines = []
    spec = tiny_spec(ml100k_dir, tmp_path / "f", workers=2)
    result = run_bench(spec, log=lines.append)
    S._context.cache_clear()
    status = {c.cell.id: c.status for c in result.cells}
    assert status == {CELLS[0]: "done", CELLS[1]: "done", CELLS[2]: "done",
                      CELLS[3]: "failed"}
    # the failing fit ran once (stage 1), not again for the cell
    assert calls.count(("sisa", 1)) == 1
    run = json.loads((tmp_path / "f" / CELLS[3] / "run.json").read_text())
    assert run["status"] == "failed" and "boom (test)" in run["error"]
    assert "RuntimeError" in run["traceback"]
    assert any("learned state ml-100k/bpr/sisa/1: FAILED" in line for line in lines)
    with pytest.raises(TrustrecError, match="boom"):
        run_bench(tiny_spec(ml100k_dir, tmp_path / "g", workers=2, seeds=[1]), quiet=True,
                  stop_on_error=True)


def test_engine_and_workers_are_checked(ml100k_dir, tmp_path):
    assert ENGINES.names() == ["local", "ray"]
    with pytest.raises(ConfigError, match="did you mean 'ray'"):
        tiny_spec(ml100k_dir, tmp_path, engine="rey")
    with pytest.raises(ConfigError, match="workers"):
        tiny_spec(ml100k_dir, tmp_path, workers=0)
    assert tiny_spec(ml100k_dir, tmp_path).workers is None  # one per CPU
    with pytest.raises(UnknownNameError, match="unknown engine"):
        open_engine("dask", 2)
    with pytest.raises(ConfigError, match="positive"):
        open_engine("local", 0)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ConfigError, match=r"pip install 'trustrec\[ray\]'"):
        import_ray()


def test_cli_engine_options(ml100k_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "--datasets", str(ml100k_dir), "--engine", "spark",
                              "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 2 and "unknown engine 'spark'" in res.output
    res = runner.invoke(app, ["bench", "--datasets", str(ml100k_dir), "--workers", "0",
                              "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 2 and "BenchSpec.workers" in res.output
    assert "greater than 0" in res.output


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.slow
def test_killing_the_bench_ends_its_workers(ml100k_dir, tmp_path):
    """kill -9 of `trustrec bench` (the issue's orphaned workers): its local workers die
    with it instead of running on and writing into the output folder."""
    import os
    import signal
    import subprocess
    import time

    spec = tiny_spec(ml100k_dir, tmp_path / "b", workers=2, seeds=[0, 1, 2, 3],
                     model_configs={"bpr": {"epochs": 300, "dim": 32, "patience": 300}})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_json()))
    code = ("import json, sys; from trustrec.bench import run_bench, spec_from_mapping\n"
            "if __name__ == '__main__':\n"
            " run_bench(spec_from_mapping(json.load(open(sys.argv[1]))), quiet=True)\n")
    script = tmp_path / "run.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script), str(spec_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    workers: list[int] = []
    while time.monotonic() - t0 < 240:
        kids = [p for p in _children(proc.pid) if _alive(p)]
        if len(kids) >= 2 and (tmp_path / "b" / "_learned").exists():
            workers = kids
            break
        time.sleep(0.2)
    assert workers, "the bench did not start its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "workers outlived the bench"
