"""Train: load and split a dataset, fit an unlearner, write a new model directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trustrec import __version__
from trustrec.errors import TrustrecError
from trustrec.fileio import now_iso
from trustrec.store.modeldir import FORMAT, FORMAT_VERSION, check_target, data_sha256, read_meta


def train_model_dir(dataset: str, model: str, out: str | Path, *, method: str = "retrain",
                    seed: int = 0, model_config: dict[str, Any] | None = None,
                    method_config: dict[str, Any] | None = None,
                    data_dir: str | Path | None = None,
                    split_ratios: Sequence[float] = (0.8, 0.1, 0.1), split: str = "random",
                    overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Load and split a dataset, fit an unlearner, and write a model directory.

    Args:
        dataset: a known dataset name or a path.
        model: registered model name.
        out: the model directory to create.
        method: unlearning method that will serve later forget requests (``retrain``
            retrains the model; ``sisa`` keeps shard models and retrains only the affected
            shards).
        seed: root seed (split, training).
        model_config: model config values (unknown keys are an error).
        method_config: method config values.
        data_dir: cache folder for known datasets.
        split_ratios: train / validation / test shares of the per-user random split.
        split: ``"random"`` (per user, seeded, ``split_ratios``), ``"leave_last_out"``
            (each user's last item to test, the one before to validation: what sequential
            models are evaluated on) or ``"temporal"``.
        overwrite: replace an existing model directory at ``out``.
        progress: show progress bars.

    Returns:
        The directory's ``trustrec.json`` content.

    Raises:
        TrustrecError: ``out`` is not replaceable, or its ledger has applied deletions.
    """
    from trustrec.bench.env import versions
    from trustrec.data.loaders import load_dataset
    from trustrec.data.split import make_split
    from trustrec.store.lock import directory_lock
    from trustrec.store.versions import collect_garbage
    from trustrec.unlearn.base import make_unlearner
    from trustrec.workflows.model_dir import save_model_dir

    target = Path(out)
    check_target(target, overwrite)
    check_no_deletions(target)
    unl = make_unlearner(method, model, model_config or {}, **(method_config or {}))
    ds = load_dataset(dataset, data_dir, progress=progress)
    parts = make_split(ds, split, tuple(split_ratios), int(seed))
    t0 = time.perf_counter()
    unl.fit(parts.train, parts.valid, seed=int(seed), progress=progress)
    seconds = time.perf_counter() - t0
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "trustrec_version": __version__,
        "created": now_iso(),
        "dataset": {"name": ds.name, "source": str(dataset), "users": ds.n_users,
                    "items": ds.n_items, "interactions": ds.n_interactions},
        "split": {"kind": f"{split}_split" if split == "random" else split,
                  "ratios": [float(r) for r in split_ratios],
                  "seed": int(seed), "train_rows": parts.train.n_interactions,
                  "valid_rows": parts.valid.n_interactions,
                  "test_rows": parts.test.n_interactions},
        "model": model, "model_config": unl.model_config, "method": method,
        "method_config": unl.config_dict(), "seed": int(seed), "learn_seconds": seconds,
        "training_sha256": data_sha256(unl.train_),
        "versions": versions(),
        "history": [{"event": "train", "time": now_iso(), "seconds": seconds,
                     "rows": parts.train.n_interactions}],
    }
    with directory_lock(target, purpose="train"):
        check_target(target, overwrite)
        check_no_deletions(target)
        save_model_dir(target, meta, unl, parts.test)
        collect_garbage(target)
    return read_meta(target)


def check_no_deletions(target: Path) -> None:
    """Refuse to train into a directory whose ledger has applied deletions: a model
    trained anew from the source data would bring the forgotten data back."""
    from trustrec.store.ledger import LEDGER_FILE, Ledger

    if not (target / LEDGER_FILE).is_file():
        return
    with Ledger(target) as ledger:
        applied = ledger.counts().get("applied", 0)
    if applied:
        raise TrustrecError(f"{target} has {applied} applied deletion request(s); training "
                            "anew from the source data would bring the forgotten data back. "
                            "Train into a new directory.")
