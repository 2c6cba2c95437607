"""Run a grid in parallel, stage by stage, on an engine (local processes or Ray), any kind.

An experiment kind declares its stages of shared artefacts (e.g. learned models, then
retrained references; or undefended base models), each a list of JSON-ready keys
(:meth:`~trustrec.bench.experiments.base.Experiment.stages`), and which artefacts each cell
needs (``dependencies``). Each stage's items run in parallel on the engine and the next
stage starts when all of them are finished; the cells come last. A task is a top-level
function of ``(spec as a JSON dict, key)``: the worker rebuilds the kind's context from the
spec (kept for the worker's next tasks), computes its one item from the files of earlier
stages and writes its own files with the runner's done-markers, so a killed run resumes
like a sequential one. A cell whose artefact failed is recorded as failed without being run
(its ``run.json`` holds the upstream traceback); nothing is computed twice.

Before the engine starts, the kind may warm caches in the parent (``warm_up``): the
unlearning kind compiles every numba kernel once, so that workers never race to write
numba's on-disk cache.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from trustrec.bench.collect import CONFIG_JSON, RUN_JSON, read_json
from trustrec.bench.engine import Engine, open_engine
from trustrec.bench.env import host_info, versions
from trustrec.bench.files import write_json
from trustrec.bench.grid import fingerprint
from trustrec.bench.runner import (
    CellResult,
    cell_config,
    fresh_folder,
    run_cell,
    summary_line,
)
from trustrec.errors import TrustrecError
from trustrec.fileio import now_iso


# ---------------------------------------------------------------------------- tasks
@functools.lru_cache(maxsize=2)
def _context(spec_text: str) -> tuple[Any, Any]:
    """The worker's experiment and context for a spec (datasets stay loaded)."""
    from trustrec.bench.grid import grid_spec_from_mapping

    spec = grid_spec_from_mapping(json.loads(spec_text), validate=False)
    from trustrec.bench.experiments import get_experiment

    experiment = get_experiment(spec.kind)
    return experiment, experiment.context(spec)


def worker_context(spec: dict[str, Any]) -> tuple[Any, Any]:
    """``(experiment, context)`` of a spec given as a JSON dict (cached per process)."""
    return _context(json.dumps(spec, sort_keys=True))


def _failure(t0: float, exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "seconds": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def stage_task(spec: dict[str, Any], key: list[Any]) -> dict[str, Any]:
    """Compute one artefact: ``key = [stage name, artefact key]``."""
    t0 = time.perf_counter()
    try:
        experiment, ctx = worker_context(spec)
        experiment.run_stage(ctx, key[0], key[1])
    except Exception as exc:
        return _failure(t0, exc)
    return {"status": "done", "seconds": time.perf_counter() - t0}


def cell_task(spec: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (given by its axes) into its folder (the runner's :func:`run_cell`)."""
    t0 = time.perf_counter()
    try:
        experiment, ctx = worker_context(spec)
        res = run_cell(ctx, experiment, experiment.cell_from_axes(key))
    except Exception as exc:  # run_cell records its own errors; this is a bug guard
        return _failure(t0, exc)
    return {"status": res.status, "seconds": res.seconds, "metrics": res.metrics,
            "error": res.error}


# ---------------------------------------------------------------------------- failures
def fail_cell(ctx: Any, experiment: Any, cell: Any, error: str, trace: str) -> CellResult:
    """Record a cell as failed without running it (an artefact it needs failed)."""
    folder = ctx.out / cell.id
    config = cell_config(ctx, experiment, cell)
    fp = fingerprint(config)
    fresh_folder(folder)
    write_json(folder / CONFIG_JSON, {**config, "fingerprint": fp})
    write_json(folder / RUN_JSON, {"status": "failed", "fingerprint": fp, "cell": cell.id,
                                   "started": now_iso(), "finished": now_iso(), "seconds": 0.0,
                                   "versions": versions(), "host": host_info(),
                                   "error": error, "traceback": trace})
    return CellResult(cell, "failed", 0.0, error=error)


def _raise_failed(what: str, outcome: dict[str, Any]) -> None:
    raise TrustrecError(f"{what} failed: {outcome.get('error')}\n"
                        f"{outcome.get('traceback', '')}")


# ---------------------------------------------------------------------------- the run
def run_parallel(ctx: Any, experiment: Any, pending: list[Any], *, engine: str,
                 workers: int, emit: Callable[[str], None], quiet: bool = False,
                 stop_on_error: bool = False) -> dict[Any, CellResult]:
    """Run the pending cells of a grid stage by stage on ``engine`` with ``workers``.

    Args:
        ctx: the parent's context (datasets already loaded).
        experiment: the grid's kind.
        pending: the cells to run (finished ones left out).
        engine: ``"local"`` or ``"ray"``.
        workers: parallel tasks.
        emit: where log lines go (failures, per-cell summary lines).
        quiet: no progress bars.
        stop_on_error: raise on the first failure instead of recording it.

    Returns:
        The result of every pending cell.
    """
    from tqdm.auto import tqdm

    stages = experiment.stages(ctx, pending)
    if not pending:
        return {}
    experiment.warm_up(ctx, stages, pending)
    spec_json = ctx.spec.to_json()
    results: dict[Any, CellResult] = {}
    failed: dict[str, dict[str, Any]] = {}

    def token(stage: str, key: Any) -> str:
        return json.dumps([stage, key], sort_keys=True, default=str)

    def run_stage(eng: Engine, name: str, fn: Callable, keys: list[Any],
                  on_done: Callable[[int, dict[str, Any]], None]) -> None:
        if not keys:
            return
        bar = tqdm(total=len(keys), desc=name, unit="task", disable=quiet, dynamic_ncols=True)
        try:
            for i, outcome in eng.map(fn, spec_json, keys):
                on_done(i, outcome)
                bar.update(1)
        finally:
            bar.close()

    def cell_done(cell: Any, outcome: dict[str, Any]) -> None:
        res = CellResult(cell, outcome["status"], float(outcome.get("seconds", 0.0)),
                         dict(outcome.get("metrics") or {}), outcome.get("error"))
        results[cell] = res
        if res.status == "failed" and stop_on_error:
            trace = outcome.get("traceback") or read_json(
                ctx.out / cell.id / RUN_JSON).get("traceback", "")
            raise TrustrecError(f"cell {cell.id} failed: {res.error}\n{trace}")
        if res.status != "skipped":
            emit(summary_line(res, experiment, ctx.k))

    eng = open_engine(engine, workers)
    try:
        for stage in stages:
            keys = [[stage.name, k] for k in stage.keys
                    if not any(token(*d) in failed for d in experiment.key_dependencies(
                        stage.name, k))]

            def stage_done(i: int, outcome: dict[str, Any], keys: list = keys,
                           name: str = stage.name) -> None:
                if outcome["status"] == "failed":
                    what = experiment.describe_key(name, keys[i][1])
                    if stop_on_error:
                        _raise_failed(what, outcome)
                    failed[token(*keys[i])] = outcome
                    emit(f"{what}: FAILED ({outcome['error']})")

            run_stage(eng, stage.name, stage_task, keys, stage_done)
        runnable = []
        for cell in pending:
            bad = [token(*d) for d in experiment.dependencies(cell) if token(*d) in failed]
            if bad:
                up = failed[bad[0]]
                error = f"{json.loads(bad[0])[0]} failed: {up.get('error')}"
                fail_cell(ctx, experiment, cell, error, up.get("traceback", ""))
                cell_done(cell, {"status": "failed", "error": error,
                                 "traceback": up.get("traceback", "")})
            else:
                runnable.append(cell)
        run_stage(eng, "cells", cell_task, [c.axes() for c in runnable],
                  lambda i, outcome: cell_done(runnable[i], outcome))
    finally:
        eng.close()
    return results


__all__ = ["cell_task", "fail_cell", "run_parallel", "stage_task", "worker_context"]
