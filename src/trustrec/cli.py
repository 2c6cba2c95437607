"""The ``trustrec`` command: a thin Typer shell over the library.

Commands: ``bench`` (the unlearning benchmark), ``data fetch`` / ``data info``, ``train``,
``forget``, ``evaluate`` and ``fed run`` (one federation). Errors trustrec raises on
purpose (bad names, bad files, bad requests) print one line, ``error: ...``, on stderr and
exit with code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from trustrec.errors import ConfigError, TrustrecError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="trustrec",
    help="Trustworthy recommender systems: train, forget, evaluate and benchmark "
         "recommenders on real data.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode="markdown")
data_app = typer.Typer(help="Datasets: fetch a known dataset into the cache, or describe "
                            "any dataset.", no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(data_app, name="data")
fed_app = typer.Typer(help="Federated recommendation: run one federation from a spec file "
                           "(in-process simulator or Flower).", no_args_is_help=True,
                      rich_markup_mode="markdown")
app.add_typer(fed_app, name="fed")

EXIT_USAGE = 2


def _fail(message: str) -> None:
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(EXIT_USAGE)


def handle_errors(fn: F) -> F:
    """Turn TrustrecError / FileNotFoundError into one stderr line and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TrustrecError, FileNotFoundError, FileExistsError) as exc:
            _fail(str(exc) or type(exc).__name__)
    return wrapper  # type: ignore[return-value]


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_assignments(items: list[str] | None, what: str = "--config") -> dict[str, str]:
    """``["dim=32", "use_bias=false"]`` → ``{"dim": "32", "use_bias": "false"}``.

    Values stay text: the config converts each by its field's type
    (:func:`trustrec.config.build_config`), so ``"false"`` is False only for a boolean
    field, ``"8.5"`` for an integer field is an error naming it, and a string field keeps
    ``"1"`` as it is.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _echo_json(obj: Any) -> None:
    from trustrec.fileio import to_json_text

    typer.echo(to_json_text(obj), nl=False)


# ---------------------------------------------------------------------------- bench
@app.command()
@handle_errors
def bench(
    kind: Annotated[str | None, typer.Option(
        help="Experiment kind: unlearning (default), privacy, attack, fairness, federated, "
             "fairclf (fair classification) or fedunlearn (federated unlearning); a spec "
             "file's 'kind' sets it too.")] = None,
    datasets: Annotated[str | None, typer.Option(
        help="Comma-separated dataset names or paths (default: ml-100k).")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated models (default: the kind's; unlearning: bpr,wmf,lightgcn, "
             "privacy: bpr).")] = None,
    methods: Annotated[str | None, typer.Option(
        help="Comma-separated methods of the kind (unlearning default: retrain,sisa; "
             "privacy default: every registered privacy method; fairness default: "
             "none,in-ucds,in-naive).")] = None,
    selections: Annotated[str | None, typer.Option(
        help="Comma-separated forget-set selections (default: core,edge,random).")] = None,
    ratios: Annotated[str | None, typer.Option(
        help="Comma-separated shares of users to forget (default: 0.05).")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated root seeds (default: 0).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: the spec's 'out', else runs/bench for unlearning "
             "and runs/privacy for privacy).")] = None,
    spec: Annotated[Path | None, typer.Option(
        help="Grid spec file (.toml or .yaml); command-line options override it.")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Dataset cache folder (default: $TRUSTREC_DATA or ~/.cache/trustrec).")] = None,
    engine: Annotated[str | None, typer.Option(
        help="Where parallel work runs: local (processes, the default) or ray (needs "
             "pip install 'trustrec[ray]').")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Tasks run at once (default: one per CPU; 1 runs every cell in this "
             "process).")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="Evaluation protocol: trustrec (default) or cure4rec (its 5-core data, 80/20 "
             "split without validation, untruncated NDCG, signed A-IGF).")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar and no per-cell lines.")] = False,
) -> None:
    """Run a benchmark grid and write results.csv, summary.csv, report.md and report.html.

    The default kind, unlearning: every cell (dataset x model x method x selection x ratio
    x seed) learns, forgets the selected users, and measures utility (before/after, same
    users), fairness (A-IGF), completeness (a suite of membership attacks, and agreement
    with retraining) and efficiency (forget time against a retrain timed in the same
    process). With no options it runs the default grid on MovieLens-100K (fetched into the
    cache on first use).

    `--kind privacy` (or `kind = "privacy"` in the spec file) runs the attribute-privacy
    grid instead (dataset x model x method x attribute set x seed: attack metrics,
    NDCG/Recall, seconds and a privacy-vs-utility plot); its own axes (attributes,
    attackers, audited users, views) come from a spec file; options a kind does not have
    are an error. `--kind fairness` trains each model with user-fairness (In-UCDS,
    In-Naive) or long-tail methods (SAM, EISAM, IPS, logit adjustment) against plain
    training and reports utility, UGF and the item side. `--kind federated` trains
    federated recommenders against their centralised ceilings. `--kind fairclf` runs fair
    classification on Adult / COMPAS (OptFair, FedFACT, WassFFed, fairlearn's mitigators;
    accuracy against global and local disparity, a Pareto plot); `--kind fedunlearn`
    forgets a class or a backdoor across a federation on digits (FedAF and baselines).

    Finished cells are skipped on a rerun, so an interrupted run resumes.
    """
    from trustrec.bench.grid import read_spec_file, spec_with_overrides
    from trustrec.bench.runner import run_grid

    values = read_spec_file(spec) if spec is not None else {}
    overrides = {"kind": kind, "datasets": _split_list(datasets),
                 "models": _split_list(models), "methods": _split_list(methods),
                 "selections": _split_list(selections), "ratios": _split_list(ratios),
                 "seeds": _split_list(seeds), "out": out, "data_dir": data_dir,
                 "engine": engine, "workers": workers, "protocol": protocol}
    grid = spec_with_overrides(values, overrides,
                               str(spec) if spec is not None else "command line")
    result = run_grid(grid, quiet=quiet)
    failed = result.failed
    typer.echo(f"cells: {result.count('done')} run, {result.count('skipped')} already "
               f"done, {len(failed)} failed")
    typer.echo(f"results: {result.paths['results']}")
    typer.echo(f"report:  {result.paths['html']}")
    typer.echo(f"         {result.paths['markdown']}")
    if failed:
        for res in failed:
            typer.echo(f"failed: {res.cell.id}: {res.error} (traceback in "
                       f"{result.out / res.cell.id / 'run.json'})", err=True)
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- data
@data_app.command("fetch")
@handle_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="A known dataset, e.g. ml-100k or ml-1m.")],
    data_dir: Annotated[Path | None, typer.Option(
        help="Cache folder (default: $TRUSTREC_DATA or ~/.cache/trustrec).")] = None,
) -> None:
    """Download a known dataset into the cache (checksummed) and print its folder."""
    from trustrec.data.fetch import fetch

    typer.echo(str(fetch(name, data_dir, progress=sys.stderr.isatty())))


@data_app.command("info")
@handle_errors
def data_info(
    name_or_path: Annotated[str, typer.Argument(
        help="A known dataset name, or a dataset folder or file.")],
    data_dir: Annotated[Path | None, typer.Option(
        help="Cache folder for known datasets.")] = None,
) -> None:
    """Print a JSON summary of a dataset: sizes, density, activity, attributes, dates."""
    from trustrec.data.info import dataset_info
    from trustrec.data.loaders import load_dataset

    ds = load_dataset(name_or_path, data_dir, progress=sys.stderr.isatty())
    _echo_json(dataset_info(ds))


# ---------------------------------------------------------------------------- train
@app.command()
@handle_errors
def train(
    dataset: Annotated[str, typer.Option(help="Known dataset name or path.")],
    model: Annotated[str, typer.Option(help="Model: bpr, wmf, lightgcn, ...")],
    out: Annotated[Path, typer.Option(help="Model directory to create.")],
    method: Annotated[str, typer.Option(
        help="Unlearning method that will serve forget requests: retrain or sisa.")
    ] = "retrain",
    seed: Annotated[int, typer.Option(help="Root seed (split and training).")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Maximum training epochs.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Model option KEY=VALUE (repeatable), e.g. --config dim=32.")
    ] = None,
    split: Annotated[str, typer.Option(
        help="random (80/10/10 per user), leave_last_out (sequential models) or temporal.")
    ] = "random",
    method_config: Annotated[list[str] | None, typer.Option(
        "--method-config", help="Method option KEY=VALUE (repeatable), e.g. n_shards=5.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Cache folder for known datasets.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing model directory at --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a model and write a model directory that can later forget and be evaluated.

    The dataset is split per user (80/10/10, seeded; or leave-last-out with --split
    leave_last_out, as sequential models are evaluated); the model learns on the training
    part with early stopping on validation. The directory holds the unlearner (so that
    `trustrec forget` can retrain what a request touches), the model (model.save format),
    and the test rows for `trustrec evaluate`.
    """
    from trustrec.workflows.train import train_model_dir

    model_config = parse_assignments(config)
    if epochs is not None:
        model_config["epochs"] = epochs
    meta = train_model_dir(dataset, model, out, method=method, seed=seed,
                           model_config=model_config, split=split,
                           method_config=parse_assignments(method_config, "--method-config"),
                           data_dir=data_dir, overwrite=overwrite, progress=not quiet)
    typer.echo(f"trained {meta['model']} ({meta['method']}) on {meta['dataset']['name']} "
               f"in {meta['learn_seconds']:.1f} s → {out}")


# ---------------------------------------------------------------------------- forget
@app.command()
@handle_errors
def forget(
    model_dir: Annotated[Path, typer.Option(help="Model directory (from `trustrec train`).")],
    users: Annotated[str | None, typer.Option(
        help="Comma-separated raw user ids to forget entirely.")] = None,
    users_file: Annotated[Path | None, typer.Option(
        help="File of raw user ids, one per line.")] = None,
    pairs: Annotated[Path | None, typer.Option(
        help="CSV/TSV file of raw (user, item) interactions to forget, one per line.")
    ] = None,
    items: Annotated[str | None, typer.Option(
        help="Comma-separated raw item ids to forget entirely.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the updated model directory here (default: update in place).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="A key of your choosing: the same key again returns the first request's "
             "receipt and forgets nothing more.")] = None,
    ledger_url: Annotated[str | None, typer.Option(
        envvar="TRUSTREC_LEDGER_URL",
        help="Request ledger (default: SQLite in the model directory; or "
             "postgresql://...).")] = None,
    lock_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for another writer of the directory (default: as long as it "
             "takes).")] = None,
) -> None:
    """Forget users, interactions or items (raw ids) and keep a receipt.

    The ids are checked first: an unknown or already-forgotten id is an error naming it,
    and nothing is recorded or written. The request is then recorded in the directory's
    ledger and applied under the directory's lock, together with any other pending
    request (one retrain for the batch): its rows leave the training, validation and test
    data, the raw ids of forgotten users and items leave the id maps, what the rows
    touched is retrained, and the new state, checked after a reload, replaces the old one
    atomically. The receipt (receipts/<request id>.json, never overwritten) holds counts,
    what was retrained, seconds, the verification and a keyed digest of the ids; the salt
    of that digest is printed once and kept nowhere else.
    """
    from trustrec.data.idfiles import read_id_file, read_pairs_file
    from trustrec.store.modeldir import copy_model_dir
    from trustrec.workflows.forget import forget as forget_request

    if users is not None and users_file is not None:
        raise ConfigError("give either --users or --users-file, not both")
    user_ids = _split_list(users) if users is not None else (
        read_id_file(users_file) if users_file is not None else None)
    pair_ids = read_pairs_file(pairs) if pairs is not None else None
    item_ids = _split_list(items)
    if not (user_ids or pair_ids or item_ids):
        raise ConfigError("nothing to forget: give --users, --users-file, --pairs or --items")
    if out is not None:
        copy_model_dir(model_dir, out)
        model_dir = out
    row = forget_request(model_dir, users=user_ids, pairs=pair_ids, items=item_ids,
                         idempotency_key=idempotency_key, ledger_url=ledger_url,
                         lock_timeout=lock_timeout)
    receipt = row["receipt"]
    removed = receipt["removed"]
    again = "" if row["created"] else " (already applied for this idempotency key)"
    typer.echo(f"request {row['request_id']} applied in version {row['model_version']}"
               f"{again}: batch of {receipt['batch_requests']} request(s) removed "
               f"{removed['training_rows']} training, {removed['validation_rows']} "
               f"validation and {removed['test_rows']} test rows, retrained "
               f"{', '.join(receipt['retrained']) or 'nothing'} in "
               f"{receipt['seconds']:.1f} s; verified: {receipt['verification']['passed']}")
    typer.echo(f"receipt: {Path(model_dir) / 'receipts' / (row['request_id'] + '.json')}")
    if row.get("salt"):
        typer.echo(f"salt: {row['salt']} (keep it: the receipt's ids_digest is "
                   "sha256(salt || ids); it is stored nowhere else)")


# ---------------------------------------------------------------------------- evaluate
@app.command()
@handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Option(help="Model directory (from `trustrec train`).")],
    out: Annotated[Path | None, typer.Option(
        help="Also write the JSON result to this file.")] = None,
    sampled: Annotated[int | None, typer.Option(
        help="Also rank each test item among this many random unseen items (the papers' "
             "sampled protocol, e.g. 100; random ties), reported apart.")] = None,
) -> None:
    """Evaluate a model directory on its stored test split: utility and A-IGF (JSON).

    Ranks every item a user has not trained on (full ranking) and reports NDCG, Recall,
    HitRate, MRR and Precision at 10 and 20, and A-IGF (NDCG@20 gap between the 5 % most
    active users and the rest). A sequential model reads training + validation items as
    each user's history. With --sampled 100, the papers' 1 + 100 protocol too, labelled
    "sampled" (3-6x more flattering than full ranking; never mix the two).
    """
    from trustrec.bench.files import write_atomic
    from trustrec.fileio import to_json_text
    from trustrec.workflows.evaluate import evaluate_model_dir

    result = evaluate_model_dir(model_dir, sampled=sampled)
    if out is not None:
        write_atomic(out, to_json_text(result))
    _echo_json(result)


# ---------------------------------------------------------------------------- audit
@app.command()
@handle_errors
def audit(
    model_dir: Annotated[Path, typer.Option(help="Model directory (from `trustrec train`).")],
    attributes: Annotated[str, typer.Option(
        help="Comma-separated user attributes to attack, e.g. gender,age,occupation.")],
    attackers: Annotated[str, typer.Option(
        help="Comma-separated attackers: lr (logistic regression), mlp, gbt "
             "(gradient-boosted trees).")] = "lr,mlp,gbt",
    folds: Annotated[int, typer.Option(help="Stratified cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Root seed (folds, attackers).")] = 0,
    views: Annotated[str, typer.Option(
        help="Comma-separated views: released (the released user table), fold_in (users "
             "re-derived from the released item table and their training items).")
    ] = "released,fold_in",
    null_permutations: Annotated[int, typer.Option(
        help="Label permutations of the null interval (0: none).")] = 20,
    out: Annotated[Path | None, typer.Option(
        help="Also write the table as CSV: attribute,view,attacker,metric,value.")] = None,
) -> None:
    """Attribute-inference audit: how well can attackers read user attributes off the
    model's released user embeddings, or off users folded back in from its item table?

    Each attacker is trained with balanced class weights and scored by stratified, seeded
    K-fold cross-validation over users: balanced accuracy, macro-F1 and AUC (one-vs-rest
    for more than two classes), beside the chance level (1/classes), the majority-class
    baseline and the distances from chance |BA - chance| and |AUC - 0.5| (an attacker
    below chance leaks too). Per attribute and view, a last line gives the leakage (the
    worst attacker's |BA - chance|) and the 95 % interval logistic regression reaches on
    permuted labels. Age is binned into the MovieLens-1M age groups.
    """
    import warnings

    from trustrec.fileio import write_atomic
    from trustrec.privacy.attack import audit_model_dir, audit_wide, leakage, null_interval

    if _split_list(attributes) == []:
        raise ConfigError("--attributes is empty; give e.g. gender,age")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = audit_model_dir(model_dir, attributes, attackers=_split_list(attackers) or [],
                                folds=folds, seed=seed, views=_split_list(views) or [],
                                null_permutations=null_permutations)
    wide = audit_wide(table)
    typer.echo(wide.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for (attribute, view), part in table.groupby(["attribute", "view"], sort=False):
        interval = null_interval(part)
        null = ("" if interval is None else
                f"; null 95 % [{interval[0]:.3f}, {interval[1]:.3f}]"
                + (" — outside: leaks" if part.query(
                    "attacker == 'worst' and metric == 'outside_null'")["value"].iloc[0] > 0
                   else " — inside"))
        typer.echo(f"leakage {attribute} {view}: {leakage(part):.3f}{null}")
    for attribute, note in table.attrs.get("notes", {}).items():
        typer.echo(f"note: {attribute}: {note}")
    if out is not None:
        write_atomic(out, table.to_csv(index=False, float_format="%.6g"))
        typer.echo(f"written: {out}")


# ---------------------------------------------------------------------------- protect
@app.command()
@handle_errors
def protect(
    model_dir: Annotated[Path, typer.Option(help="Model directory (from `trustrec train`).")],
    method: Annotated[str, typer.Option(
        help="Post-training method: pot-au-d2d, pot-au-u2u or lego.")],
    attributes: Annotated[str, typer.Option(
        help="Comma-separated user attributes to unlearn, e.g. gender,age.")],
    out: Annotated[Path, typer.Option(help="Model directory to write (the protected model).")],
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Method option KEY=VALUE (repeatable), e.g. --config steps=300.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Root seed of the method.")] = 0,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing model directory at --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Unlearn user attributes from a trained model's user embeddings (post-training).

    Only the released user table changes; the result is a model directory like any other
    (`trustrec evaluate` and `trustrec audit` work on it) plus protect_report.json
    (method, options, seconds, losses). LEGO also keeps its per-attribute calibrations,
    so protecting its output again with attributes added or dropped reuses them.
    """
    from trustrec.workflows.protect import protect_model_dir

    report = protect_model_dir(model_dir, method, attributes, out,
                               config=parse_assignments(config), seed=seed,
                               overwrite=overwrite, progress=not quiet)
    reused = report.get("reused_calibrations") or []
    typer.echo(f"protected {', '.join(report['attributes'])} with {report['method']} in "
               f"{report['seconds']:.1f} s → {out}"
               + (f" (reused calibrations: {', '.join(reused)})" if reused else ""))
    typer.echo(f"report: {Path(out) / 'protect_report.json'}")


# ---------------------------------------------------------------------------- attack
@app.command()
@handle_errors
def attack(
    model_dir: Annotated[Path, typer.Option(
        help="Model directory of a sequential model (trustrec train --model sasrec "
             "--split leave_last_out).")],
    method: Annotated[str, typer.Option(
        help="Attack: creat, replace, simalter, popular, random or none.")],
    target: Annotated[str, typer.Option(help="Raw id of the item to promote.")],
    out: Annotated[Path, typer.Option(help="Model directory to write (the retrained victim).")],
    budget: Annotated[float, typer.Option(
        help="Share of users whose training sequences are polluted, in (0, 1].")] = 0.01,
    per_user: Annotated[int, typer.Option(help="Items changed per polluted sequence.")] = 5,
    mode: Annotated[str, typer.Option(help="replace or insert.")] = "replace",
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Attack option KEY=VALUE (repeatable), e.g. --config group=8.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Root seed (users, attack, retraining).")] = 0,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing model directory at --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Pollute a share of real users' training sequences toward a target item, retrain
    the victim on them, and write it as a new model directory.

    The source directory is only read. The new one holds the retrained victim, the
    polluted training data, attack_receipt.json (every change, with raw ids) and
    attack_report.json (the target's exposure before and after, full-catalogue and sampled
    1+100; clean accuracy shift; prediction shift; detector AUC; distribution distance).
    """
    from trustrec.workflows.attack import RECEIPT, REPORT, attack_model_dir

    report = attack_model_dir(model_dir, method, target, out, budget=budget,
                              per_user=per_user, mode=mode,
                              config=parse_assignments(config), seed=seed,
                              overwrite=overwrite, progress=not quiet)
    m = report["metrics"]
    typer.echo(f"{method}: {int(m['n_changes'])} changes in {int(m['n_polluted'])} sequences "
               f"({report['attack_seconds']:.1f} s); target HR@10 "
               f"{m['clean_target_hit@10']:.4f} → {m['target_hit@10']:.4f} (full), "
               f"{m['clean_sampled_target_hit@10']:.4f} → {m['sampled_target_hit@10']:.4f} "
               f"(sampled 1+100) → {out}")
    typer.echo(f"receipt: {Path(out) / RECEIPT}; report: {Path(out) / REPORT}")


# ---------------------------------------------------------------------------- deletions
@app.command()
@handle_errors
def ledger(
    model_dir: Annotated[Path, typer.Option(help="Model directory.")],
    status: Annotated[str | None, typer.Option(
        help="Only requests with this status: received, applying, applied, rejected.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 100,
    offset: Annotated[int, typer.Option(help="Rows to skip.")] = 0,
    apply: Annotated[bool, typer.Option(
        "--apply", help="First apply every pending request (e.g. after a crash).")] = False,
    ledger_url: Annotated[str | None, typer.Option(
        envvar="TRUSTREC_LEDGER_URL", help="Request ledger (default: SQLite in the model "
                                           "directory; or postgresql://...).")] = None,
) -> None:
    """Print the directory's request ledger as JSON: every deletion request, its status,
    the model version that applied it and its receipt. It holds no raw id."""
    from trustrec.store.ledger import Ledger
    from trustrec.store.modeldir import read_meta
    from trustrec.workflows.forget import apply_pending

    read_meta(model_dir)
    if apply:
        apply_pending(model_dir, ledger_url=ledger_url)
    with Ledger(model_dir, ledger_url) as book:
        _echo_json({"counts": book.counts(), "rows": book.rows(limit, offset, status)})


@app.command()
@handle_errors
def serve(
    model_dir: Annotated[Path, typer.Option(help="Model directory to serve.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding the bearer token (default: $TRUSTREC_SERVICE_TOKEN).")] = None,
    batch_delay: Annotated[float, typer.Option(
        help="Seconds a batch waits for more requests after its first.")] = 1.0,
    max_wait: Annotated[float, typer.Option(
        help="Most seconds the oldest pending request waits for its batch.")] = 10.0,
    ledger_url: Annotated[str | None, typer.Option(
        envvar="TRUSTREC_LEDGER_URL", help="Request ledger (default: SQLite in the model "
                                           "directory; or postgresql://...).")] = None,
) -> None:
    """Run the deletion service (HTTP API with token authentication) for a model directory.

    POST /v1/requests takes raw ids and answers 202 at once; requests are recorded in the
    ledger and applied in batches; GET /v1/requests/{id} gives status and receipt,
    GET /v1/ledger the ledger, GET /v1/health liveness. See trustrec.service.app.
    """
    import os

    import uvicorn

    from trustrec.service.app import create_app

    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get("TRUSTREC_SERVICE_TOKEN", "").strip()
    if not token:
        raise ConfigError("the service needs a token: --token-file FILE or "
                          "TRUSTREC_SERVICE_TOKEN")
    app_ = create_app(model_dir, token=token, ledger_url=ledger_url,
                      batch_delay=batch_delay, max_wait=max_wait)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


# ---------------------------------------------------------------------------- fed
@fed_app.command("run")
@handle_errors
def fed_run(
    spec: Annotated[Path, typer.Option(help="Run spec (.toml/.yaml): dataset, method, "
                                            "config, seed, split, runtime, out.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run one federation: a progress bar per round, a checkpoint after every round (run
    the same spec again to resume a killed run), then `model/`, `curve.parquet`,
    `result.json` and `report.md` in the spec's `out` directory."""
    from trustrec.federated.run import load_run_spec, run_spec

    record = run_spec(load_run_spec(spec), progress=not quiet)
    figures = ", ".join(f"{m} {v:.4f}" for m, v in record["test"].items())
    resumed = record["resumed_from_round"]
    note = f" (resumed from round {resumed})" if resumed else ""
    typer.echo(f"{record['method']}: round {record['model'].get('best_round', 'last')} chosen"
               f"{note}; test {figures} → {record['spec']['out']}")


def main() -> None:  # pragma: no cover  (python -m trustrec.cli)
    """Entry point for ``python -m trustrec.cli``."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
