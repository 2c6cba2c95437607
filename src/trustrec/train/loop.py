"""The one training loop: epochs, validation NDCG, early stopping, best-state restore."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from trustrec.data.dataset import Dataset
from trustrec.evaluate.ranking import ndcg_at


def train_epochs(
    model: object,
    epoch_fn: Callable[[int], float],
    *,
    epochs: int,
    train: Dataset,
    valid: Dataset | None,
    patience: int = 5,
    eval_every: int = 1,
    k: int = 20,
    progress: bool = False,
    desc: str = "train",
    after_epoch: Callable[[int], None] | None = None,
) -> None:
    """Run ``epoch_fn(epoch)`` up to ``epochs`` times with early stopping on validation NDCG@k.

    After each epoch ``after_epoch(epoch)`` runs when given (the fit's
    ``callback``, see ``EmbeddingRecommender.fit``). Every ``eval_every`` epochs the model is
    scored on ``valid`` (training items masked); the best parameters seen are restored at
    the end, and training stops after ``patience`` evaluations without improvement. Without
    ``valid`` every epoch runs and the last state is kept. Model selection never looks at
    the test split.

    Args:
        model: an ``EmbeddingRecommender`` (``params_`` and ``fit_info_`` are used).
        epoch_fn: runs one epoch in place and returns its mean loss.
        epochs: maximum number of epochs.
        train: training data (its items are masked during validation).
        valid: validation data, or None.
        patience: evaluations without improvement before stopping.
        eval_every: epochs between evaluations.
        k: NDCG cut-off for model selection.
        progress: show a progress bar with loss and validation NDCG.
        desc: progress-bar label.
        after_epoch: called with the epoch number after every epoch, before validation.
    """
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, bad = -1.0, 0, None, 0
    t_train = 0.0
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        loss = float(epoch_fn(epoch))
        if after_epoch is not None:
            after_epoch(epoch)
        t_train += time.perf_counter() - t0
        rec: dict[str, float] = {"epoch": epoch, "loss": loss}
        if valid is not None and valid.n_interactions and (
                epoch % eval_every == 0 or epoch == epochs):
            ndcg = ndcg_at(model, train, valid, k)
            rec[f"valid_ndcg@{k}"] = ndcg
            if ndcg > best:
                best, best_epoch, bad = ndcg, epoch, 0
                best_state = {n: t.detach().clone() for n, t in model.params_.items()}
            else:
                bad += 1
            bar.set_postfix(loss=f"{loss:.4f}", ndcg=f"{ndcg:.4f}")
        else:
            bar.set_postfix(loss=f"{loss:.4f}")
        history.append(rec)
        if bad >= patience:
            break
    if best_state is not None:
        with torch.no_grad():
            for n, t in best_state.items():
                model.params_[n] = t
    model.fit_info_.update({
        "epochs_run": len(history),
        "best_epoch": best_epoch if best_state is not None else len(history),
        f"best_valid_ndcg@{k}": best if best_state is not None else None,
        "train_seconds": t_train,
        "history": history,
    })
