"""Protect a model directory: a post-training method writes a new model directory.

``trustrec protect`` is a thin shell over :func:`protect_model_dir`. The output is a
complete model directory (:mod:`trustrec.store.modeldir`): ``trustrec evaluate``, ``trustrec
audit`` and :func:`~trustrec.models.base.load_model` on its ``model/`` work as on any
other. It adds::

    protect_report.json          method, config, attributes, seed, seconds, per-step
                                 losses, and a check that the saved model reloads with
                                 exactly the protected user table
    protection/lego.safetensors  (LEGO only) the original table, the per-attribute
                                 calibrations and α, so that protecting the output again
                                 with another attribute set reuses the calibrations

The output is written as a new version under its directory lock and swapped in (never
half-written); the source is read under its lock too.

The protection lives in the model's user table, which ``trustrec forget`` rebuilds from
the remaining data; forget therefore applies the recorded protection again before it
writes (:func:`recorded_protection`, :func:`reprotect`), and its receipt says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trustrec.errors import ConfigError, DataFormatError, TrustrecError, UnsupportedRequestError
from trustrec.fileio import now_iso
from trustrec.models.base import EmbeddingRecommender
from trustrec.privacy.protect import attribute_list, protect_model, table_sha256
from trustrec.store.modeldir import MODEL_DIR, PROTECT_REPORT, PROTECTION_DIR

#: Metadata key of the LEGO state: sha256 of the released table it produced.
RELEASED_SHA = "released_sha256"


def _reusable_lego(src: Path, model: EmbeddingRecommender, config: Mapping[str, Any]
                   ) -> Any:
    """The source directory's LEGO state when it produced ``model``'s table with the
    same calibration settings, else None."""
    from safetensors import safe_open

    from trustrec.config import build_config, to_dict
    from trustrec.privacy.base import user_table
    from trustrec.privacy.lego import STATE_FILE, Lego, LegoConfig

    file = src / PROTECTION_DIR / STATE_FILE
    if not file.is_file():
        return None
    with safe_open(str(file), framework="pt") as fh:
        released = (fh.metadata() or {}).get(RELEASED_SHA)
    if released != table_sha256(user_table(model)):
        return None  # the model changed since (e.g. forget retrained it)
    state = Lego.load_state(file)
    wanted = to_dict(build_config(LegoConfig, {**state.config_dict(), **config},
                                  where="lego"))
    ignore = {"workers"}
    if any(wanted[k] != v for k, v in state.config_dict().items() if k not in ignore):
        return None  # other settings: calibrate afresh (from the original table)
    state.config = build_config(LegoConfig, wanted, where="lego")
    return state


def protect_unlearner(unl: Any, method: str, attributes: Sequence[str] | str, *,
                      config: Mapping[str, Any] | None = None, seed: int = 0,
                      reuse: Any = None, progress: bool = False,
                      header: Mapping[str, Any] | None = None
                      ) -> tuple[dict[str, Any], Callable[[Path], None]]:
    """Protect the single model of a loaded unlearner in place.

    Args:
        unl: an unlearner holding one persistent model (e.g. ``retrain``).
        method: a registered post-training method.
        attributes: attribute names or ``"gender,age"``.
        config: method options.
        seed: root seed.
        reuse: see :func:`protect_model`.
        progress: show progress bars.
        header: fields put at the top of the report (e.g. the directories).

    Returns:
        ``(report, extra)``: the protection report, and ``extra(folder)`` that checks
        the model saved in ``folder/model`` has exactly the protected table, writes the
        LEGO state (LEGO only) and ``protect_report.json`` there (for
        :func:`trustrec.store.modeldir.write_dir`).

    Raises:
        UnsupportedRequestError: the unlearner holds several models (shards).
    """
    from trustrec.fileio import to_json_text, write_atomic
    from trustrec.models.base import load_model
    from trustrec.privacy.base import user_table
    from trustrec.privacy.lego import Lego

    names = attribute_list(attributes)
    models = unl.persistent_models()
    if len(models) != 1:
        raise UnsupportedRequestError(
            f"the model directory holds {len(models)} models (method {unl.name!r}); "
            "protection needs a single released user table (train with --method retrain)")
    (key, model), = models.items()
    t0 = time.perf_counter()
    protected, protector = protect_model(model, unl.train_, method, names, config=config,
                                         seed=seed, progress=progress, reuse=reuse)
    seconds = time.perf_counter() - t0
    unl.restore_state({key: protected}, unl.persistent_arrays())
    record = protected.fit_info_.get("protection", {})
    released = table_sha256(user_table(protected))
    report = {"format": "trustrec-protect-report", "time": now_iso(), **dict(header or {}),
              "method": method,
              "config": record.get("config"), "attributes": names, "seed": int(seed),
              "seconds": seconds, "released_sha256": released,
              "reused_calibrations": record.get("reused", []), "protection": record}

    def extra(tmp: Path) -> None:
        saved = load_model(tmp / MODEL_DIR)
        if table_sha256(user_table(saved)) != released:
            raise TrustrecError("verification failed: the saved model's user table is not "
                                "the protected one; nothing was written")
        report["verification"] = {"checked": "model/ reloaded from disk",
                                  "user_table_matches": True}
        if isinstance(protector, Lego):
            state = protector.save_state(tmp / PROTECTION_DIR,
                                         metadata={RELEASED_SHA: released})
            report["lego_state"] = f"{PROTECTION_DIR}/{state.name}"
        write_atomic(tmp / PROTECT_REPORT, to_json_text(report))

    return report, extra


def recorded_protection(model_dir: str | Path) -> dict[str, Any] | None:
    """The protection a directory was written with (``protect_report.json``), or None.

    Returns:
        ``{"method", "attributes", "config", "seed"}`` to apply again with
        :func:`reprotect`.

    Raises:
        DataFormatError: a report that cannot be read (checked before any work).
    """
    file = Path(model_dir) / PROTECT_REPORT
    if not file.is_file():
        return None
    try:
        old = json.loads(file.read_text(encoding="utf-8"))
        return {"method": str(old["method"]), "attributes": list(old["attributes"]),
                "config": dict(old.get("config") or {}), "seed": int(old.get("seed", 0))}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataFormatError(f"{file}: unreadable protection report ({exc}); nothing was "
                              "changed") from None


def reprotect(recorded: Mapping[str, Any], unl: Any, model_dir: str | Path,
              progress: bool = False) -> tuple[dict[str, Any], Callable[[Path], None]]:
    """Apply a directory's recorded protection again to its (changed) unlearner.

    ``trustrec forget`` retrains or updates the model from the data, which undoes the
    protection; it calls this before writing, so a protected directory stays protected
    (same method, config, attributes and seed), computed afresh on the model without the
    forgotten data. Forgotten users' attributes are erased by then, so they are no
    longer part of the protection's losses.

    Args:
        recorded: :func:`recorded_protection` of the directory.
        unl: its loaded unlearner, after forgetting.
        model_dir: the directory (for the report).
        progress: show progress bars.

    Returns:
        ``(report, extra)`` as :func:`protect_unlearner`.
    """
    return protect_unlearner(unl, recorded["method"], recorded["attributes"],
                             config=recorded["config"], seed=recorded["seed"],
                             progress=progress,
                             header={"model_dir": str(model_dir), "source": str(model_dir),
                                     "reapplied_after": "forget"})


def protect_model_dir(model_dir: str | Path, method: str, attributes: Sequence[str] | str,
                      out: str | Path, *, config: Mapping[str, Any] | None = None,
                      seed: int = 0, overwrite: bool = False, progress: bool = False
                      ) -> dict[str, Any]:
    """Protect the model of a model directory and write the result as a new one.

    Everything is checked before any work: the source must hold a single model (e.g.
    method ``retrain``), ``out`` must differ from it and be new or empty (or a model
    directory with ``overwrite``), the method must be a post-training method with valid
    options, and every attribute must exist in the stored training data. A LEGO source
    directory whose ``protection/lego.safetensors`` produced its current model (same
    settings) is *updated*: only new attributes are calibrated.

    Args:
        model_dir: the source model directory (not modified).
        method: ``pot-au-d2d``, ``pot-au-u2u``, ``lego`` or another registered protector.
        attributes: attribute names or ``"gender,age"``.
        out: the model directory to write.
        config: method options.
        seed: root seed.
        overwrite: replace an existing model directory at ``out``.
        progress: show progress bars.

    Returns:
        The report (also written to ``out/protect_report.json``).
    """
    from trustrec.privacy.base import PROTECTORS, make_protector
    from trustrec.store.lock import directory_lock
    from trustrec.store.modeldir import check_target
    from trustrec.store.versions import collect_garbage
    from trustrec.workflows.model_dir import load_model_dir, save_model_dir

    src, target = Path(model_dir), Path(out)
    if target.resolve() == src.resolve():
        raise ConfigError("--out must differ from --model-dir (the source stays as it is)")
    PROTECTORS.get(method)
    make_protector(method, **dict(config or {}))  # options checked before loading
    names = attribute_list(attributes)
    check_target(target, overwrite)
    with directory_lock(src, purpose="protect (reading the source)"):
        md = load_model_dir(src)
    unl = md.unlearner
    models = unl.persistent_models()
    reuse = (_reusable_lego(src, next(iter(models.values())), config or {})
             if method == "lego" and len(models) == 1 else None)
    report, extra = protect_unlearner(
        unl, method, names, config=config, seed=seed, reuse=reuse, progress=progress,
        header={"model_dir": str(target), "source": str(src), "model": md.meta.get("model")})
    seconds = report["seconds"]
    meta = dict(md.meta)
    meta["history"] = [*meta.get("history", []),
                       {"event": "protect", "time": report["time"], "method": method,
                        "attributes": names, "seconds": seconds}]
    with directory_lock(target, purpose="protect"):
        check_target(target, overwrite)
        save_model_dir(target, meta, unl, md.test, extra=extra)
        collect_garbage(target)
    return report
