"""The privacy grid: spec parsing and typo errors, a tiny real grid on MovieLens-100K
(files, results.csv with views and scored user sets, report with plot, table and the
threat model), resume, and ``trustrec bench`` dispatch."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.bench.collect import read_results, result_columns
from trustrec.bench.experiments.privacy import (
    Privacy,
    PrivacyCell,
    PrivacySpec,
    expand_attack_rows,
    privacy_registries,
)
from trustrec.bench.grid import (
    grid_spec_from_mapping,
    load_grid_spec,
    read_spec_file,
    spec_with_overrides,
)
from trustrec.bench.runner import run_grid
from trustrec.cli import app
from trustrec.errors import ConfigError, UnknownNameError

TOML = """
kind = "privacy"
datasets = ["ml-100k"]
models = ["bpr"]
methods = ["none"]
attributes = ["gender", "gender,age", ["occupation", "age"]]
seeds = [0, 1]
attackers = ["lr", "gbt"]
folds = 3
out = "runs/p"

[model_configs.bpr]
epochs = 5
"""

YAML = """
kind: privacy
datasets: [ml-100k]
models: [bpr]
methods: [none]
attributes: [gender, "gender,age", [occupation, age]]
seeds: [0, 1]
attackers: [lr, gbt]
folds: 3
out: runs/p
model_configs:
  bpr: {epochs: 5}
"""

RESULT_COLUMNS = result_columns(Privacy.axes)
FAST_MODEL = {"bpr": {"epochs": 8, "dim": 16, "eval_every": 2, "patience": 2}}
#: Methods cheap enough for a unit test (with these configs), used when registered.
FAST_METHODS = {"output-noise": {}, "pot-au-u2u": {"steps": 10}, "hide-table": {}}


def privacy_spec_from_mapping(values):
    return grid_spec_from_mapping({"kind": "privacy", **values})


def registered_fast_methods() -> dict[str, dict]:
    methods = privacy_registries()[0]
    return {m: cfg for m, cfg in FAST_METHODS.items() if m in methods}


# ---------------------------------------------------------------------------- spec
@pytest.mark.parametrize("name,text", [("p.toml", TOML), ("p.yaml", YAML)])
def test_toml_and_yaml_give_the_same_spec(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    spec = load_grid_spec(path)
    assert spec.attributes == ["gender", "gender,age", "occupation,age"]
    assert spec.attackers == ["lr", "gbt"] and spec.folds == 3 and spec.seeds == [0, 1]
    assert spec.model_config("bpr")["epochs"] == 5
    cells = spec.cells()
    assert len(cells) == 1 * 1 * 1 * 3 * 2
    assert cells[1] == PrivacyCell("ml-100k", "bpr", "none", "gender,age", 0)
    assert cells[1].id == "ml-100k/bpr/none/gender+age/seed0"
    assert cells[1].attribute_list == ["gender", "age"]


def test_defaults_and_baseline_first():
    spec = PrivacySpec()
    assert spec.methods == ["none", "output-noise", "pot-au-d2d", "pot-au-u2u", "lego",
                            "raid", "adversarial", "hide-table"]
    assert spec.attributes == ["gender"] and spec.attackers == ["lr", "mlp", "gbt"]
    assert spec.out == "runs/privacy" and spec.folds == 5
    # the held-out threat model, both views and the permutation null by default
    assert spec.label_share == 0.5 and spec.users == ["held-out", "seen"]
    assert spec.views == ["released", "fold_in"] and spec.null_permutations == 20
    in_sample = PrivacySpec(label_share=1, users=["all"])
    assert in_sample.label_share == 1.0 and in_sample.users == ["all"]
    late = PrivacySpec(methods=["raid", "none"], seeds=[1, 0])
    assert [c.method for c in late.cells()] == ["none", "raid", "none", "raid"]
    assert [c.seed for c in late.cells()] == [1, 1, 0, 0]


@pytest.mark.parametrize("values,error,match", [
    ({"method": ["none"]}, ConfigError, "did you mean 'methods'"),
    ({"atributes": ["gender"]}, ConfigError, "did you mean 'attributes'"),
    ({"methods": ["nonee"]}, UnknownNameError, "methods: .*'nonee'.*did you mean 'none'"),
    ({"models": ["bprr"]}, UnknownNameError, "models: .*did you mean 'bpr'"),
    ({"attackers": ["lrr"]}, UnknownNameError, "attackers: .*did you mean 'lr'"),
    ({"datasets": ["ml-100"]}, UnknownNameError, "datasets: .*did you mean 'ml-100k'"),
    ({"model_configs": {"bpr": {"epoch": 3}}}, ConfigError, "did you mean 'epochs'"),
    ({"method_configs": {"lgoe": {}}}, UnknownNameError, "method_configs: .*'lgoe'"),
    ({"method_configs": {"none": {"x": 1}}}, ConfigError, "none.*no options"),
    ({"folds": 1}, ConfigError, r"PrivacySpec\.folds.*greater than or equal to 2"),
    ({"attributes": []}, ConfigError, "non-empty"),
    ({"attributes": ["gender,gender"]}, ConfigError, "'gender' is given twice"),
    ({"attributes": ["gender", "gender"]}, ConfigError, "listed twice"),
    ({"attributes": [" , "]}, ConfigError, "names no attribute"),
    ({"seeds": [0, 0]}, ConfigError, "listed twice"),
    ({"kind": "privcy"}, ConfigError, "did you mean 'privacy'"),
    ({"split_ratios": [0.9, 0.1, 0.0]}, ConfigError, "test > 0"),
    ({"label_share": 0}, ConfigError, r"PrivacySpec\.label_share.*greater than 0"),
    ({"label_share": 1.5}, ConfigError, "label_share"),
    ({"label_share": 1}, ConfigError, "no held-out user"),
    ({"users": ["all"]}, ConfigError, "with label_share < 1"),
    ({"users": ["held-out", "all"]}, ConfigError, "cannot be combined"),
    ({"users": ["heldout"]}, ConfigError, "did you mean 'held-out'"),
    ({"views": ["foldin"]}, ConfigError, "did you mean 'fold_in'"),
    ({"null_permutations": 1}, ConfigError, "null_permutations"),
])
def test_bad_specs_fail_before_any_work(tmp_path, values, error, match):
    base = {"methods": ["none"], "out": str(tmp_path / "out")}
    with pytest.raises(error, match=match):
        grid_spec_from_mapping({"kind": "privacy", **base, **values})
    assert not (tmp_path / "out").exists()


def test_model_without_released_table_is_rejected(monkeypatch):
    """A model class without the capability the audit (a released user table) or a
    method (PoT-AU: a pair scorer) needs fails the spec before any work, naming it."""
    from trustrec.models.wmf import WMF

    monkeypatch.delattr(WMF, "pair_scorer")
    with pytest.raises(ConfigError, match=r"method 'pot-au-d2d' needs a model with pair "
                                          r"scores .*\(PairScorer\); model 'wmf' does not "
                                          r"have one; models that do: .*bpr"):
        privacy_spec_from_mapping({"models": ["wmf"], "methods": ["none", "pot-au-d2d"]})
    privacy_spec_from_mapping({"models": ["wmf"], "methods": ["none", "output-noise"]})
    monkeypatch.delattr(WMF, "released_user_table")
    with pytest.raises(ConfigError, match=r"models: the attribute audit needs a model with "
                                          r"a released user table \(ReleasesUserTable\); "
                                          r"model 'wmf' does not have one"):
        privacy_spec_from_mapping({"models": ["wmf"], "methods": ["none"]})


def test_method_config_typo_names_the_key():
    methods = privacy_registries()[0]
    if not methods:
        pytest.skip("no privacy method registered yet")
    name, cls = sorted(methods.items())[0]
    field = dataclasses.fields(cls.Config)[0].name
    with pytest.raises(ConfigError, match=f"did you mean '{field}'"):
        privacy_spec_from_mapping({"methods": ["none", name],
                                   "method_configs": {name: {field + "x": 1}}})


def test_one_loader_for_every_kind(tmp_path):
    unlearning = tmp_path / "u.toml"
    unlearning.write_text('datasets = ["ml-100k"]\nmethods = ["retrain"]\n')
    assert load_grid_spec(unlearning).kind == "unlearning"
    explicit = tmp_path / "k.toml"
    explicit.write_text('kind = "unlearning"\nmethods = ["retrain"]\n')
    assert load_grid_spec(explicit).kind == "unlearning"
    privacy = tmp_path / "p.toml"
    privacy.write_text(TOML)
    spec = spec_with_overrides(read_spec_file(privacy), {"seeds": "3,4", "models": None,
                                                         "out": tmp_path / "o"}, str(privacy))
    assert isinstance(spec, PrivacySpec)
    assert spec.seeds == [3, 4] and spec.models == ["bpr"] and spec.out == str(tmp_path / "o")
    with pytest.raises(ConfigError, match="--ratios does not apply to the privacy grid"):
        spec_with_overrides(read_spec_file(privacy), {"ratios": "0.1"}, str(privacy))
    # every kind runs in parallel on the same engines
    assert spec_with_overrides(read_spec_file(privacy), {"workers": 2}, "p").workers == 2


def test_the_shipped_spec_reports_seeds_the_tuning_never_saw():
    # The reported grid and the tuning script must not share seeds: the defaults are
    # chosen on benchmarks/tune_privacy.py's seeds, the README reports the grid's.
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    spec = load_grid_spec(root / "specs" / "privacy-ml100k.toml")
    assert spec.seeds == [0, 1, 2]
    assert spec.label_share == 0.5 and spec.users == ["held-out", "seen"]
    assert spec.views == ["released", "fold_in"] and spec.null_permutations == 20
    assert "hide-table" in spec.methods and spec.method_configs == {}
    assert len(spec.cells()) == 8 * 3 * 3
    tuned = json.loads((root / "tune_privacy_result.json").read_text())
    assert tuned["seeds"] and not set(tuned["seeds"]) & set(spec.seeds)
    assert tuned["label_share"] == spec.label_share


# ---------------------------------------------------------------------------- a real grid
def grid_values(ml100k_dir, out, methods, **extra):
    fast = registered_fast_methods()
    values = {"kind": "privacy", "datasets": [str(ml100k_dir)], "models": ["bpr"],
              "methods": methods, "attributes": ["gender"], "seeds": [0],
              "attackers": ["lr"], "folds": 3, "null_permutations": 4,
              "out": str(out), "model_configs": FAST_MODEL,
              "method_configs": {m: cfg for m, cfg in fast.items() if cfg and m in methods}}
    values.update(extra)
    return values


@pytest.fixture(scope="module")
def grid(ml100k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("privacy") / "run"
    methods = ["none", *registered_fast_methods()]
    spec = privacy_spec_from_mapping(grid_values(ml100k_dir, out, methods))
    result = run_grid(spec, quiet=True, stop_on_error=True)
    return spec, result


def cell_id(method):
    return f"ml-100k/bpr/{method}/gender/seed0"


def cell_dir(result, method):
    return result.out / cell_id(method)


def test_every_file_is_written(grid):
    spec, result = grid
    assert [c.status for c in result.cells] == ["done"] * len(spec.methods)
    for method in spec.methods:
        folder = cell_dir(result, method)
        for name in ("config.json", "metrics.json", "audit.csv", "run.json"):
            assert (folder / name).is_file(), (method, name)
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] == "done" and {"torch", "numpy"} <= set(run["versions"])
        assert set(run["timings"]) >= {"method_seconds", "audit_seconds", "eval_seconds"}
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["cell"]["method"] == method
        assert cfg["audit"] == {"attackers": ["lr"], "folds": 3, "label_share": 0.5,
                                "users": ["held-out", "seen"],
                                "views": ["released", "fold_in"], "null_permutations": 4}
        assert cfg["model_config"]["dim"] == 16
    base = result.out / "_base" / "ml-100k" / "bpr" / "seed0"
    for name in ("model/model.safetensors", "model/model.json", "state.json"):
        assert (base / name).is_file(), name
    for name in ("results.csv", "report.md", "report.html", "spec.json"):
        assert (result.out / name).is_file(), name


def test_results_csv_long_format(grid):
    spec, result = grid
    raw = read_results(result.out / "results.csv")
    assert list(raw.columns) == RESULT_COLUMNS
    assert (result.out / "results.csv").read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    assert set(raw["kind"]) == {"privacy"}
    assert "attack/gender/held-out/released/lr/balanced_accuracy" in set(raw["metric"])
    frame = expand_attack_rows(raw)
    assert set(frame["method"]) == set(spec.methods)
    attack = frame[frame["attribute"] != ""]
    assert set(attack["attribute"]) == {"gender"}
    assert set(attack["attacker"]) == {"lr", "majority", "permuted", "worst"}
    assert set(attack["view"]) == {"released", "fold_in"}
    assert set(attack["users"]) == {"held-out", "seen"}
    assert {"balanced_accuracy", "macro_f1", "auc", "chance", "bacc_distance",
            "auc_distance", "bacc_low", "bacc_high", "outside_null"} <= set(attack["metric"])
    util = frame[frame["attribute"] == ""]
    assert set(util["attacker"]) == {""} and set(util["view"]) == {""}
    for m in ("ndcg@10", "ndcg@20", "recall@20", "ndcg@20_rel_drop", "ndcg@20_none",
              "method_seconds", "base_train_seconds", "total_seconds", "label_share",
              "seen_users", "held_out_users"):
        assert m in set(util["metric"]), m
    v = frame.set_index(["method", "attribute", "view", "users", "attacker",
                         "metric"])["value"].sort_index()
    key = ("none", "gender", "released", "held-out")
    # gender has two classes: chance 1/2, and the majority baseline is at chance exactly
    assert v[(*key, "lr", "chance")] == 0.5
    assert v[(*key, "majority", "balanced_accuracy")] == pytest.approx(0.5)
    ba = v[(*key, "lr", "balanced_accuracy")]
    assert 0.0 <= ba <= 1.0
    assert v[(*key, "lr", "bacc_distance")] == pytest.approx(abs(ba - 0.5))
    low, high = v[(*key, "permuted", "bacc_low")], v[(*key, "permuted", "bacc_high")]
    assert low < 0.5 < high
    assert v[(*key, "worst", "outside_null")] == float(not low <= ba <= high)
    # the threat model: half of the 943 labelled users seen by the method, half held out
    u = ("none", "", "", "", "")
    assert v[(*u, "label_share")] == 0.5
    assert v[(*u, "seen_users")] + v[(*u, "held_out_users")] == 943
    assert abs(v[(*u, "seen_users")] - 471.5) <= 0.5
    # the undefended model is the baseline: no drop, no method time, trained once
    assert v[(*u, "ndcg@20_rel_drop")] == 0.0
    assert v[(*u, "method_seconds")] == 0.0
    ref = v[(*u, "ndcg@20")]
    assert ref > 0.05  # BPR-MF after a few epochs on ML-100K ranks far above random (~0.01)
    for method in spec.methods:
        m = (method, "", "", "", "")
        assert v[(*m, "ndcg@20_none")] == pytest.approx(ref)
        drop = (ref - v[(*m, "ndcg@20")]) / ref
        assert v[(*m, "ndcg@20_rel_drop")] == pytest.approx(drop)


def test_report_has_plot_and_table(grid):
    spec, result = grid
    md = (result.out / "report.md").read_text()
    page = (result.out / "report.html").read_text()
    plot = result.out / "plots" / "privacy_utility_ml-100k_bpr.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](plots/privacy_utility_ml-100k_bpr.png)" in md
    assert page.count("data:image/png;base64,") == 1
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    for col in ("Leakage", "held-out released", "held-out fold-in", "seen released",
                "seen fold-in", "AUC dist.", "Null 95 %", "Outside null", "BAcc lr",
                "Chance", "NDCG@20", "Recall@20", "NDCG@20 drop", "Seconds"):
        assert col in header, col
    assert "BAcc majority" not in header and "best" not in header
    # the report states the threat model
    assert "Threat model: held-out users" in md and "50 % of the labelled users" in md
    assert "Threat model: held-out users" in page
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == spec.methods
    assert "<table>" in page and "Attribute: gender" in page


def test_report_rows_are_the_cells_and_attributes_that_exist(grid):
    # Two attribute sets: one row per (cell, attribute) actually audited, never the
    # cartesian product of the index levels (a set protecting gender has no age row).
    from trustrec.bench.experiments.privacy_report import per_seed_points

    spec, result = grid
    frame = expand_attack_rows(read_results(result.out / "results.csv"))
    other = frame.copy()
    other["attributes"] = "age"
    other.loc[other["attribute"] == "gender", "attribute"] = "age"
    points = per_seed_points(pd.concat([frame, other], ignore_index=True), 20)
    assert len(points) == 2 * len(spec.methods)
    assert set(zip(points["attributes"], points["attribute"], strict=True)) == {
        ("gender", "gender"), ("age", "age")}
    assert points["chance"].notna().all() and points["leakage"].notna().all()
    assert points.attrs["users"] == ["held-out", "seen"]


def test_rerun_skips_and_method_config_change_reruns_only_that_method(grid, ml100k_dir,
                                                                      tmp_path):
    spec, result = grid
    out = tmp_path / "copy"  # a copy: the other tests keep the grid's own folder as it is
    shutil.copytree(result.out, out)
    spec = privacy_spec_from_mapping({**spec.to_json(), "out": str(out)})
    stamps = {m: (out / cell_id(m) / "run.json").stat().st_mtime_ns for m in spec.methods}
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped"] * len(spec.methods)
    assert {m: (out / cell_id(m) / "run.json").stat().st_mtime_ns
            for m in spec.methods} == stamps
    base_model = out / "_base/ml-100k/bpr/seed0/model/model.safetensors"
    base_stamp = base_model.stat().st_mtime_ns
    changed = changed_method_config(spec)
    if changed is None:
        pytest.skip("no fast privacy method with a numeric option is registered yet")
    method, cfg = changed
    configs = {**spec.method_configs, method: {**spec.method_configs.get(method, {}), **cfg}}
    spec2 = privacy_spec_from_mapping(grid_values(ml100k_dir, out, spec.methods,
                                                  method_configs=configs))
    third = run_grid(spec2, quiet=True, stop_on_error=True)
    status = {c.cell.method: c.status for c in third.cells}
    assert status == {m: "done" if m == method else "skipped" for m in spec.methods}
    assert base_model.stat().st_mtime_ns == base_stamp  # the base model was reused
    saved = json.loads((out / cell_id(method) / "config.json").read_text())
    assert all(saved["method_config"][k] == v for k, v in cfg.items())


def test_a_code_change_reruns_every_cell(grid, tmp_path, monkeypatch):
    # The source a cell runs is part of its fingerprint, and the source a shared artefact
    # is built with part of the artefact's: results the current code would not give are
    # never kept (a stale grid once reported a method's old behaviour). Simulated by
    # changing the fingerprint of one subpackage's source.
    from trustrec.bench import env
    from trustrec.bench.experiments import get_experiment

    spec, result = grid
    out = tmp_path / "copy"
    shutil.copytree(result.out, out)
    # in this process, where the monkeypatch applies
    spec = privacy_spec_from_mapping({**spec.to_json(), "out": str(out), "workers": 1})
    saved = json.loads((out / cell_id(spec.methods[0]) / "config.json").read_text())
    assert saved["source"] == get_experiment("privacy").source()
    base_model = out / "_base/ml-100k/bpr/seed0/model/model.safetensors"
    stamp = base_model.stat().st_mtime_ns
    real, edited = env.source_fingerprint, {"package": "privacy"}

    def fingerprint(*parts: str) -> str:
        return real(*parts) + ("-edited" if edited["package"] in parts else "")

    monkeypatch.setattr(env, "source_fingerprint", fingerprint)
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["done"] * len(spec.methods)
    assert base_model.stat().st_mtime_ns == stamp  # the methods' code: base model kept
    edited["package"] = "models"
    third = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in third.cells] == ["done"] * len(spec.methods)
    assert base_model.stat().st_mtime_ns != stamp  # the models' code: base model rebuilt
    assert run_grid(spec, quiet=True).count("skipped") == len(spec.methods)


def test_report_code_is_not_part_of_a_cells_source():
    from trustrec.bench.env import source_fingerprint
    from trustrec.bench.experiments import get_experiment

    for kind in ("unlearning", "privacy"):
        exp = get_experiment(kind)
        # the packages it declares, its own module and the shared context; not
        # bench/experiments/<kind>_report.py, render.py or report.py
        assert exp.source() == source_fingerprint(*exp.source_packages, "bench/context.py",
                                                  f"bench/experiments/{kind}.py")
        assert exp.source() != source_fingerprint(*exp.source_packages)
    with pytest.raises(ValueError, match="no Python source"):
        source_fingerprint("no-such-package")


def test_source_fingerprint_is_stable_and_per_package():
    from trustrec.bench.env import source_fingerprint

    assert source_fingerprint("privacy") == source_fingerprint("privacy")
    assert source_fingerprint("privacy") != source_fingerprint("models")
    assert len(source_fingerprint("privacy")) == 16


def changed_method_config(spec) -> tuple[str, dict] | None:
    """A different value for one float option of a registered method in the grid."""
    methods = privacy_registries()[0]
    for name in spec.methods:
        if name not in methods:
            continue
        for f in dataclasses.fields(methods[name].Config):
            value = spec.method_config(name)[f.name]
            if isinstance(value, float) and not isinstance(value, bool) and value > 0:
                return name, {f.name: value * 0.5}
    return None


def test_unknown_attribute_fails_before_any_cell(ml100k_dir, tmp_path):
    spec = privacy_spec_from_mapping(grid_values(ml100k_dir, tmp_path / "o", ["none"],
                                                 attributes=["gendr"]))
    with pytest.raises(UnknownNameError, match="no user attribute 'gendr'.*'gender'"):
        run_grid(spec, quiet=True)
    assert not (tmp_path / "o" / "_base").exists()
    assert not (tmp_path / "o" / "ml-100k").exists()


# ---------------------------------------------------------------------------- CLI
def test_cli_bench_dispatches_privacy_specs(grid, ml100k_dir, tmp_path):
    spec, result = grid
    path = tmp_path / "privacy.toml"
    lines = ['kind = "privacy"', f"methods = {json.dumps(spec.methods)}",
             'attributes = ["gender"]', 'attackers = ["lr"]', "folds = 3",
             "null_permutations = 4", "[model_configs.bpr]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in FAST_MODEL["bpr"].items()]
    for method, cfg in spec.method_configs.items():
        lines += [f'[method_configs."{method}"]']
        lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "--spec", str(path), "--datasets", str(ml100k_dir),
                              "--out", str(result.out), "--seeds", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"cells: 0 run, {len(spec.methods)} already done, 0 failed" in res.output
    assert "report.html" in res.output
    bad = runner.invoke(app, ["bench", "--spec", str(path), "--selections", "core"])
    assert bad.exit_code == 2 and "--selections does not apply" in bad.output
    typo = tmp_path / "typo.toml"
    typo.write_text('kind = "privacy"\nmethods = ["none", "raidd"]\n')
    bad = runner.invoke(app, ["bench", "--spec", str(typo)])
    assert bad.exit_code == 2 and "raidd" in bad.output

