"""SASRec: trustrec against RecBole's SASRec, on the same leave-last-out split, one run.

Both libraries train SASRec with the same architecture (d = 64, 2 blocks, 1 head, the
last 50 items, dropout 0.2, full-softmax cross-entropy, Adam lr 1e-3) for a fixed number
of epochs each (``--epochs`` for trustrec, ``--peer-epochs`` for RecBole, whose epoch is
~100× the work), no early stopping, on the same training rows (every row written
for RecBole in trustrec's per-user order with increasing timestamps, so RecBole's own
leave-last-out cuts the same train / validation / test rows). Each is then evaluated by
**its own** full-sort evaluator on the test item (history = training + validation
items, seen items masked), NDCG@10 and HR@10. Printed: seconds per epoch, total
training seconds, NDCG@10, HR@10, and the ratios.

How each library counts an epoch differs, and that is the point of comparing them as a
user meets them: RecBole turns every prefix of every sequence into one training example
(its default batch of 2,048 prefixes); trustrec trains every position of each user's
sequence in one pass (batches of 128 users). Both use their default batch size.

RecBole is an optional peer: it pins ``ray<=2.6.3`` (trustrec's ``ray`` extra wants a
newer one) and needs ``setuptools<81``, so it lives in its own environment; NumPy 2
removed names it aliases, which this script gives back before importing it::

    python3 -m venv /tmp/peer && . /tmp/peer/bin/activate
    pip install torch==2.13.0 && pip install recbole==1.2.1 "setuptools<81" && pip install -e .
    python benchmarks/sequential_peer.py --epochs 60 --peer-epochs 4 --ml1m

Measured here (2 cores shared with another job, one torch thread each, seed 0):
trustrec 60 epochs 2.73 s/epoch, 164 s, NDCG@10 0.1001 / HR@10 0.186; RecBole 4 epochs
123 s/epoch, 493 s, NDCG@10 0.0428 / HR@10 0.090 (not converged: each of its epochs
costs 45 of ours, and 60 would take two hours); ML-1M shape: 19.5 s per trustrec epoch.

Also timed: one epoch on the synthetic ML-1M shape (6,040 users, 3,706 items, 1M rows;
timing only, its quality means nothing) for trustrec's SASRec (``--ml1m``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.data.loaders import load_dataset
from trustrec.data.split import Split, leave_last_out
from trustrec.evaluate.ranking import evaluate_ranking, summarize
from trustrec.models import make_model

#: The shared architecture and optimiser.
DIM, BLOCKS, HEADS, MAX_LEN, DROPOUT, LR = 64, 2, 1, 50, 0.2, 1e-3


def trustrec_run(split: Split, epochs: int, seed: int) -> dict[str, float]:
    """trustrec's SASRec: fixed epochs, its own full-sort evaluation."""
    model = make_model("sasrec", dim=DIM, blocks=BLOCKS, heads=HEADS, max_len=MAX_LEN,
                       dropout=DROPOUT, lr=LR, epochs=epochs, eval_every=epochs,
                       patience=epochs)
    t0 = time.perf_counter()
    model.fit(split.train, None, seed=seed)
    seconds = time.perf_counter() - t0
    known = split.known()
    m = summarize(evaluate_ranking(model, known, split.test, ks=(10,), history=known))
    return {"seconds": seconds, "epoch_seconds": seconds / epochs,
            "ndcg@10": m["ndcg@10"], "hit@10": m["hit@10"]}


def recbole_run(ds: Dataset, epochs: int, seed: int) -> dict[str, float]:
    """RecBole's SASRec on the same rows (its leave-last-out of the same order), its own
    full-sort evaluation."""
    # RecBole 1.2.1 aliases names NumPy 2 removed (np.float = np.float_, ...): give them
    # back, for this peer only
    for old, new in (("float_", np.float64), ("complex_", np.complex128),
                     ("unicode_", np.str_), ("bool8", np.bool_)):
        if old not in np.__dict__:
            setattr(np, old, new)
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "loo"
        folder.mkdir()
        # every row, each user's in trustrec's order, stamped 0, 1, 2, ...: RecBole's
        # leave-last-out (order TO, LS valid_and_test) then cuts the same rows as ours
        whole = ds
        order = np.lexsort((whole.timestamps, whole.users))
        rows = ["user_id:token\titem_id:token\ttimestamp:float"] + [
            f"{whole.user_ids[u]}\t{whole.item_ids[i]}\t{t}"
            for t, (u, i) in enumerate(zip(whole.users[order], whole.items[order],
                                           strict=True))]
        (folder / "loo.inter").write_text("\n".join(rows) + "\n")
        config = Config(model="SASRec", dataset="loo", config_dict={
            "data_path": tmp, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": MAX_LEN, "train_neg_sample_args": None,
            "loss_type": "CE", "hidden_size": DIM, "inner_size": DIM, "n_layers": BLOCKS,
            "n_heads": HEADS, "hidden_dropout_prob": DROPOUT, "attn_dropout_prob": DROPOUT,
            "learning_rate": LR, "epochs": epochs, "eval_step": epochs + 1,
            "stopping_step": epochs + 1, "metrics": ["NDCG", "Hit"], "topk": [10],
            "valid_metric": "NDCG@10",
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                          "group_by": "user"},
            "device": "cpu", "use_gpu": False, "show_progress": False, "seed": seed,
            "reproducibility": True, "checkpoint_dir": tmp, "log_wandb": False,
            "state": "ERROR"})
        init_seed(seed, True)
        data = create_dataset(config)
        train, _valid, test = data_preparation(config, data)
        model = SASRec(config, train.dataset).to("cpu")
        trainer = Trainer(config, model)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            trainer._train_epoch(train, epoch, show_progress=False)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    return {"seconds": seconds, "epoch_seconds": seconds / epochs,
            "ndcg@10": float(result["ndcg@10"]), "hit@10": float(result["hit@10"])}


def ml1m_epoch(seed: int) -> float:
    """Seconds of one trustrec SASRec epoch on the synthetic ML-1M shape."""
    from trustrec.data.synthetic import ml1m_shaped

    split = leave_last_out(ml1m_shaped(seed=seed))
    model = make_model("sasrec", dim=DIM, max_len=MAX_LEN, epochs=1, eval_every=1)
    t0 = time.perf_counter()
    model.fit(split.train, None, seed=seed)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=60, help="trustrec's epochs")
    parser.add_argument("--peer-epochs", type=int, default=5,
                        help="RecBole's epochs (each one trains every prefix)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--ml1m", action="store_true", help="also time the ML-1M shape")
    parser.add_argument("--out", type=Path, default=Path("runs/sequential_peer.json"))
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    split = leave_last_out(ds)
    ours = trustrec_run(split, args.epochs, args.seed)
    print(f"trustrec SASRec: {ours['epoch_seconds']:.2f} s/epoch, {ours['seconds']:.1f} s, "
          f"NDCG@10 {ours['ndcg@10']:.4f}, HR@10 {ours['hit@10']:.4f}", flush=True)
    peer = recbole_run(ds, args.peer_epochs, args.seed)
    print(f"RecBole SASRec:  {peer['epoch_seconds']:.2f} s/epoch, {peer['seconds']:.1f} s, "
          f"NDCG@10 {peer['ndcg@10']:.4f}, HR@10 {peer['hit@10']:.4f}")
    ratio = peer["epoch_seconds"] / ours["epoch_seconds"]
    print(f"epoch time: RecBole / trustrec = {ratio:.2f}x; total: "
          f"{peer['seconds'] / ours['seconds']:.2f}x; NDCG@10 trustrec - RecBole = "
          f"{ours['ndcg@10'] - peer['ndcg@10']:+.4f}")
    record = {"epochs": args.epochs, "peer_epochs": args.peer_epochs, "seed": args.seed,
              "trustrec": ours, "recbole": peer, "recbole_over_trustrec_epoch": ratio}
    if args.ml1m:
        record["ml1m_shape_epoch_seconds"] = ml1m_epoch(args.seed)
        print(f"ML-1M shape (synthetic, timing only): {record['ml1m_shape_epoch_seconds']:.1f} "
              "s per trustrec SASRec epoch")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
