"""Run a benchmark grid in parallel, stage by stage, on an engine (local processes or Ray).

The runner's work is three keyed, idempotent stages (see :mod:`trustrec.bench.runner`):

1. **learn**: one learned state per (dataset, model, method, seed) that a pending cell or
   a missing reference needs;
2. **reference**: one retrained reference and one shadow model per group of cells (same
   forget set) that lacks them. Where the group's ``retrain`` cell is pending, that cell
   runs here and stores the reference, exactly as in a sequential run (so the group is
   retrained once); otherwise the reference and the shadow alone are computed;
3. **cells**: every other pending cell.

Each stage's items run in parallel on the engine and the next stage starts when all of
them are finished. A task is a top-level function of ``(spec as a JSON dict, key)``: the
worker rebuilds a :class:`~trustrec.bench.runner.BenchContext` from the spec (kept for the
worker's next tasks), computes its one item from the files of earlier stages and writes
its own files with the runner's done-markers, so a killed run resumes like a sequential
one. A cell whose learned state or reference failed is recorded as failed without being
run (its ``run.json`` holds the upstream traceback); nothing is computed twice.

Numba's on-disk cache (``cache=True``) is written by whichever process compiles a kernel
first, index before machine code, with data files numbered per index. Two processes
compiling one kernel for the first time (after an edit of its source, say) can therefore
leave an index entry that points at another signature's machine code, or at a stale file
of the previous source version. So before the engine starts, the parent *warms the
cache*: it fits and forgets every (model, method) of the pending work
once on a tiny synthetic dataset (64 users, 50 items, at most 2 model epochs); array dtypes
are the same for every dataset, so this compiles every kernel with the signatures the
real data uses. The workers then only load compiled code. Warm-up failures are ignored:
the real task then raises and is recorded as usual. It costs a second or two per (model,
method) pair, a little more where a method has a large fixed cost.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from trustrec.bench.collect import CONFIG_JSON, RUN_JSON, read_json
from trustrec.bench.engine import Engine, open_engine
from trustrec.bench.env import host_info, versions
from trustrec.bench.files import write_json
from trustrec.bench.runner import (
    STATE_JSON,
    BenchContext,
    CellResult,
    fresh_folder,
    is_current,
    run_cell,
    summary_line,
)
from trustrec.bench.spec import REFERENCE_METHOD, Cell, fingerprint
from trustrec.errors import TrustrecError
from trustrec.fileio import now_iso

LearnKey = tuple[str, str, str, int]
WARM_USERS = 64
WARM_EPOCHS = 2


# ---------------------------------------------------------------------------- the plan
@dataclasses.dataclass
class Plan:
    """The pending work of a grid, by stage.

    Attributes:
        learn: learned states to compute, as (dataset, model, method, seed).
        reference: per group lacking a reference, the cell that stands for it: its pending
            ``retrain`` cell (run as a whole) or any of its pending cells (reference only).
        cells: the remaining pending cells.
    """

    learn: list[LearnKey]
    reference: list[Cell]
    cells: list[Cell]

    def __len__(self) -> int:
        return len(self.learn) + len(self.reference) + len(self.cells)


def learn_key(cell: Cell, method: str | None = None) -> LearnKey:
    """The learned state a cell needs (of its own method, or of ``method``)."""
    return (cell.dataset, cell.model, method or cell.method, cell.seed)


def has_learned(ctx: BenchContext, key: LearnKey) -> bool:
    """Whether the learned state of ``key`` is stored and current."""
    return is_current(ctx.learned_dir(*key), STATE_JSON,
                       fingerprint(ctx.learned_config(*key)))


def make_plan(ctx: BenchContext, pending: Iterable[Cell]) -> Plan:
    """Split the pending cells into the three stages (skipping what is already stored)."""
    pending = list(pending)
    groups: dict[Any, list[Cell]] = {}
    for cell in pending:
        groups.setdefault(cell.group, []).append(cell)
    need_ref = {g: cs for g, cs in groups.items()
                if not (ctx.has_reference(cs[0]) and ctx.has_shadow(cs[0]))}
    keys = [learn_key(c) for c in pending]
    keys += [learn_key(cs[0], REFERENCE_METHOD) for cs in need_ref.values()]
    learn = [k for k in dict.fromkeys(keys) if not has_learned(ctx, k)]
    reference = []
    for cs in need_ref.values():
        ref_cell = next((c for c in cs if c.method == REFERENCE_METHOD), cs[0])
        reference.append(ref_cell)
    in_stage2 = {c for c in reference if c.method == REFERENCE_METHOD}
    return Plan(learn, reference, [c for c in pending if c not in in_stage2])


# ---------------------------------------------------------------------------- tasks
@functools.lru_cache(maxsize=2)
def _context(spec_text: str) -> BenchContext:
    """The worker's context for a spec (datasets and splits stay loaded between tasks)."""
    from trustrec.bench.spec import spec_from_mapping

    return BenchContext(spec_from_mapping(json.loads(spec_text), validate=False))


def worker_context(spec: dict[str, Any]) -> BenchContext:
    """The :class:`BenchContext` of a spec given as a JSON dict (cached per process)."""
    return _context(json.dumps(spec, sort_keys=True))


def _failure(t0: float, exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "seconds": time.perf_counter() - t0,
            "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def learn_task(spec: dict[str, Any], key: list[Any]) -> dict[str, Any]:
    """Stage 1: compute and store the learned state ``(dataset, model, method, seed)``."""
    t0 = time.perf_counter()
    try:
        ctx = worker_context(spec)
        ctx.learned(str(key[0]), str(key[1]), str(key[2]), int(key[3]))
    except Exception as exc:
        return _failure(t0, exc)
    return {"status": "done", "seconds": time.perf_counter() - t0}


def reference_task(spec: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
    """Stage 2: store the group's reference; a ``retrain`` cell is run as a whole."""
    cell = Cell(**key)
    if cell.method == REFERENCE_METHOD:
        return cell_task(spec, key)
    t0 = time.perf_counter()
    try:
        ctx = worker_context(spec)
        ctx.reference(cell)
        ctx.shadow(cell)
    except Exception as exc:
        return _failure(t0, exc)
    return {"status": "done", "seconds": time.perf_counter() - t0}


def cell_task(spec: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
    """Stage 3: run one cell into its folder (the runner's :func:`run_cell`)."""
    t0 = time.perf_counter()
    try:
        res = run_cell(worker_context(spec), Cell(**key))
    except Exception as exc:  # run_cell records its own errors; this is a bug guard
        return _failure(t0, exc)
    return {"status": res.status, "seconds": res.seconds, "metrics": res.metrics,
            "error": res.error}


# ---------------------------------------------------------------------------- warm-up
def warm_numba_cache(ctx: BenchContext, plan: Plan) -> None:
    """Compile every numba kernel the plan's (model, method) pairs use, in this process.

    Fits each pair once with at most :data:`WARM_EPOCHS` model epochs on a tiny synthetic
    dataset (:data:`WARM_USERS` users; every dataset has the same array dtypes, so the
    kernels compile with the signatures the real data needs) and forgets one unit (user,
    interaction, item) of each of the spec's grains.
    Errors are ignored (the real task reports them).
    """
    from trustrec.data.split import random_split
    from trustrec.data.synthetic import ml1m_shaped
    from trustrec.unlearn.base import make_unlearner
    from trustrec.unlearn.request import ForgetRequest

    pairs = dict.fromkeys((m, meth) for _, m, meth, _ in plan.learn)
    for cell in [*plan.reference, *plan.cells]:
        pairs.update(dict.fromkeys([(cell.model, cell.method),
                                    (cell.model, REFERENCE_METHOD)]))
    tiny = ml1m_shaped(0, n_users=WARM_USERS, n_items=50, n_interactions=WARM_USERS * 25)
    split = random_split(tiny, tuple(ctx.spec.split_ratios), seed=0)
    train = split.train
    one = {"user": ForgetRequest(users=train.users[:1]),
           "interaction": ForgetRequest(pairs=[[train.users[-1], train.items[-1]]]),
           "item": ForgetRequest(items=[int(np.argmax(train.item_counts()))])}
    requests = [one[g] for g in ctx.spec.grains if g in one]
    for model, method in pairs:
        try:
            cfg = dict(ctx.spec.model_config(model))
            if isinstance(cfg.get("epochs"), int):
                cfg["epochs"] = min(cfg["epochs"], WARM_EPOCHS)
            unl = make_unlearner(method, model, cfg, **ctx.spec.method_config(method))
            unl.fit(split.train, split.valid, seed=0)
        except Exception:  # best effort: the real task reports errors
            continue
        for request in requests:
            try:
                unl.forget(request)
            except Exception:  # e.g. a grain the method does not support
                continue


# ---------------------------------------------------------------------------- failures
def fail_cell(ctx: BenchContext, cell: Cell, error: str, trace: str) -> CellResult:
    """Record a cell as failed without running it (an upstream stage failed)."""
    folder = ctx.out / cell.id
    config = ctx.cell_config(cell)
    fp = fingerprint(config)
    fresh_folder(folder)
    write_json(folder / CONFIG_JSON, {**config, "fingerprint": fp})
    write_json(folder / RUN_JSON, {"status": "failed", "fingerprint": fp, "cell": cell.id,
                                   "started": now_iso(), "finished": now_iso(), "seconds": 0.0,
                                   "versions": versions(), "host": host_info(),
                                   "error": error, "traceback": trace})
    return CellResult(cell, "failed", 0.0, error=error)


def _result(cell: Cell, outcome: dict[str, Any]) -> CellResult:
    return CellResult(cell, outcome["status"], float(outcome.get("seconds", 0.0)),
                      dict(outcome.get("metrics") or {}), outcome.get("error"))


def _raise_failed(what: str, outcome: dict[str, Any]) -> None:
    raise TrustrecError(f"{what} failed: {outcome.get('error')}\n"
                        f"{outcome.get('traceback', '')}")


# ---------------------------------------------------------------------------- the run
def run_parallel(ctx: BenchContext, pending: list[Cell], *, engine: str, workers: int,
                 emit: Callable[[str], None], quiet: bool = False,
                 stop_on_error: bool = False) -> dict[Cell, CellResult]:
    """Run the pending cells of a grid stage by stage on ``engine`` with ``workers``.

    Args:
        ctx: the parent's context (datasets already loaded).
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

    plan = make_plan(ctx, pending)
    if not len(plan):
        return {}
    warm_numba_cache(ctx, plan)
    spec_json = ctx.spec.to_json()
    results: dict[Cell, CellResult] = {}
    failed_learn: dict[LearnKey, dict[str, Any]] = {}
    failed_ref: dict[Any, dict[str, Any]] = {}

    def stage(eng: Engine, name: str, fn: Callable, keys: list[Any],
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

    def learned_done(i: int, outcome: dict[str, Any]) -> None:
        if outcome["status"] == "failed":
            key = plan.learn[i]
            what = f"learned state {'/'.join(map(str, key))}"
            if stop_on_error:
                _raise_failed(what, outcome)
            failed_learn[key] = outcome
            emit(f"{what}: FAILED ({outcome['error']})")

    def reference_done(i: int, outcome: dict[str, Any]) -> None:
        cell = plan.reference[i]
        if cell.method == REFERENCE_METHOD:
            cell_done(cell, outcome)
        if outcome["status"] == "failed" and not ctx.has_reference(cell):
            failed_ref[cell.group] = outcome
            if cell.method != REFERENCE_METHOD:
                if stop_on_error:
                    _raise_failed(f"reference of {cell.id}", outcome)
                emit(f"reference for {cell.id}: FAILED ({outcome['error']})")

    def cell_done(cell: Cell, outcome: dict[str, Any]) -> None:
        res = _result(cell, outcome)
        results[cell] = res
        if res.status == "failed" and stop_on_error:
            trace = outcome.get("traceback") or read_json(
                ctx.out / cell.id / RUN_JSON).get("traceback", "")
            raise TrustrecError(f"cell {cell.id} failed: {res.error}\n{trace}")
        if res.status != "skipped":
            emit(summary_line(res, ctx.k))

    eng = open_engine(engine, workers)
    try:
        stage(eng, "learn", learn_task, [list(k) for k in plan.learn], learned_done)
        ready = []
        for cell in plan.reference:
            up = failed_learn.get(learn_key(cell, REFERENCE_METHOD)) or (
                failed_learn.get(learn_key(cell)) if cell.method == REFERENCE_METHOD
                else None)
            if up is not None:
                failed_ref[cell.group] = up
                if cell.method == REFERENCE_METHOD:
                    cell_done(cell, _upstream(ctx, cell, "its learned state", up))
            else:
                ready.append(cell)
        plan.reference = ready
        stage(eng, "reference", reference_task, [c.axes() for c in ready],
              reference_done)
        runnable = []
        for cell in plan.cells:
            up, what = failed_learn.get(learn_key(cell)), "its learned state"
            if up is None and cell.group in failed_ref:
                up, what = failed_ref[cell.group], "the retrain reference of its group"
            if up is not None:
                cell_done(cell, _upstream(ctx, cell, what, up))
            else:
                runnable.append(cell)
        plan.cells = runnable
        stage(eng, "cells", cell_task, [c.axes() for c in runnable],
              lambda i, outcome: cell_done(runnable[i], outcome))
    finally:
        eng.close()
    return results


def _upstream(ctx: BenchContext, cell: Cell, what: str, outcome: dict[str, Any]
              ) -> dict[str, Any]:
    error = f"{what} failed: {outcome.get('error')}"
    res = fail_cell(ctx, cell, error, outcome.get("traceback", ""))
    return {"status": "failed", "seconds": res.seconds, "error": error,
            "traceback": outcome.get("traceback", "")}


__all__ = ["Plan", "cell_task", "fail_cell", "learn_task", "make_plan", "reference_task",
           "run_parallel", "warm_numba_cache", "worker_context"]
