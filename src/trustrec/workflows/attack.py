"""Attack: pollute a model directory's training data, retrain its victim, write both.

The source model directory is only read. The result is a new model directory (the
retrained victim, its unlearner holding the polluted training data, the same test rows)
plus ``attack_receipt.json`` (every change, with raw ids) and the report
``attack_report.json`` (budget, options, seconds, every metric of
:func:`trustrec.attacks.run.measure`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from trustrec.errors import ConfigError, UnknownNameError
from trustrec.fileio import now_iso
from trustrec.store.modeldir import ATTACK_RECEIPT as RECEIPT
from trustrec.store.modeldir import ATTACK_REPORT as REPORT


def attack_model_dir(model_dir: str | Path, method: str, target: str, out: str | Path, *,
                     budget: float = 0.01, per_user: int = 5, mode: str = "replace",
                     config: dict[str, Any] | None = None, seed: int = 0,
                     overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Attack the model of ``model_dir`` toward item ``target`` and write the result.

    Everything is checked before any work: the attack and its options, the budget
    (``budget`` in (0, 1], ``per_user`` >= 1, ``mode``), ``out`` (new, empty, or a model
    directory with ``overwrite``; not the source), a single sequential model in the
    source, and the target's raw id.

    Args:
        model_dir: the source model directory (e.g. ``trustrec train --model sasrec
            --split leave_last_out``); not modified.
        method: a registered attack (``creat``, ``replace``, ``random``, ...).
        target: the target item's raw id.
        out: the model directory to write.
        budget: share of users whose training sequences are polluted.
        per_user: items changed per polluted sequence.
        mode: ``replace`` or ``insert``.
        config: attack options.
        seed: root seed (users, attack, retraining).
        overwrite: replace an existing model directory at ``out``.
        progress: progress bars.

    Returns:
        The report (also ``out/attack_report.json``).

    Raises:
        ConfigError, UnknownNameError: bad options, victim or target; nothing is written.
    """
    from trustrec.attacks import Budget, make_attack
    from trustrec.attacks.base import check_victim
    from trustrec.attacks.run import measure
    from trustrec.bench.files import write_json
    from trustrec.config import build_config
    from trustrec.data.split import Split
    from trustrec.store.lock import directory_lock
    from trustrec.store.modeldir import check_target
    from trustrec.store.versions import collect_garbage
    from trustrec.unlearn.base import make_unlearner
    from trustrec.workflows.model_dir import load_model_dir, save_model_dir

    src, dest = Path(model_dir), Path(out)
    if dest.resolve() == src.resolve():
        raise ConfigError("--out must differ from --model-dir (the source stays as it is)")
    attack = make_attack(method, **dict(config or {}))
    plan = build_config(Budget, {"users": budget, "per_user": per_user, "mode": mode},
                        where="budget")
    check_target(dest, overwrite)
    with directory_lock(src, purpose="attack (reading the source)"):
        md = load_model_dir(src)
    unl = md.unlearner
    models = unl.persistent_models()
    if len(models) != 1:
        raise ConfigError(f"the source holds {len(models)} models (method "
                          f"{md.meta.get('method')!r}); attack a single-model directory "
                          "(method retrain)")
    victim = next(iter(models.values()))
    check_victim(victim, unl.train_)
    train, valid = unl.train_, unl.valid_
    found = np.flatnonzero(train.item_ids == str(target))
    if not len(found):
        raise UnknownNameError(f"unknown target item {target!r}: not an item id of "
                               f"{train.name!r}")
    t0 = time.perf_counter()
    pollution = attack.perturb(victim, train, int(found[0]), plan, seed, progress)
    attack_seconds = time.perf_counter() - t0
    retrained = make_unlearner(md.meta["method"], md.meta["model"], md.meta["model_config"],
                               **md.meta.get("method_config", {}))
    t0 = time.perf_counter()
    retrained.fit(pollution.data, valid, seed=int(seed), progress=progress)
    attacked = next(iter(retrained.persistent_models().values()))
    metrics = measure(victim, attacked, pollution,
                      Split(train, valid if valid is not None else train.select(
                          np.zeros(train.n_interactions, dtype=bool)), md.test), seed)
    report = {"time": now_iso(), "source": str(src), "model_dir": str(dest),
              "attack": method, "config": attack.config_dict(),
              "budget": {"users": plan.users, "per_user": plan.per_user, "mode": plan.mode},
              "target": str(target), "seed": int(seed),
              "attack_seconds": attack_seconds,
              "retrain_seconds": time.perf_counter() - t0, "metrics": metrics}
    receipt = pollution.receipt()
    meta = dict(md.meta)
    meta["history"] = [*meta.get("history", []),
                       {"event": "attack", "time": report["time"], "attack": method,
                        "target": str(target), "changes": receipt["n_changes"]}]

    def write_receipt(folder: Path) -> None:
        write_json(folder / RECEIPT, receipt)
        write_json(folder / REPORT, report)

    with directory_lock(dest, purpose="attack"):
        check_target(dest, overwrite)
        save_model_dir(dest, meta, retrained, md.test, extra=write_receipt)
        collect_garbage(dest)
    return report
