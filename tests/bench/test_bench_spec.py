"""BenchSpec: loading from TOML/YAML, validation before any work, cell enumeration."""

from __future__ import annotations

import pytest

from trustrec.bench.spec import (
    BenchSpec,
    Cell,
    enumerate_cells,
    load_spec,
    spec_from_mapping,
)
from trustrec.errors import ConfigError, UnknownNameError

TOML = """
datasets = ["ml-100k"]
models = ["bpr", "wmf"]
methods = ["sisa", "retrain"]
selections = ["core", "random"]
ratios = [0.05, 0.1]
seeds = [0, 1]
out = "runs/x"
ks = [10, 20]

[model_configs.bpr]
epochs = 5
dim = 16

[method_configs.sisa]
n_shards = 4
"""

YAML = """
datasets: [ml-100k]
models: [bpr, wmf]
methods: [sisa, retrain]
selections: [core, random]
ratios: [0.05, 0.1]
seeds: [0, 1]
out: runs/x
ks: [10, 20]
model_configs:
  bpr: {epochs: 5, dim: 16}
method_configs:
  sisa: {n_shards: 4}
"""


def test_defaults_are_the_default_grid():
    spec = BenchSpec()
    assert spec.datasets == ["ml-100k"]
    assert spec.models == ["bpr", "wmf", "lightgcn"]
    assert spec.methods == ["retrain", "sisa"]
    assert spec.selections == ["core", "edge", "random"]
    assert spec.ratios == [0.05] and spec.seeds == [0]
    assert spec.out == "runs/bench"
    spec.validate()
    assert len(spec.cells()) == 18


@pytest.mark.parametrize("name,text", [("grid.toml", TOML), ("grid.yaml", YAML),
                                       ("grid.yml", YAML)])
def test_toml_and_yaml_load_the_same_spec(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    spec = load_spec(path)
    assert spec.models == ["bpr", "wmf"]
    assert spec.ratios == [0.05, 0.1] and spec.seeds == [0, 1]
    assert spec.model_configs == {"bpr": {"epochs": 5, "dim": 16}}
    assert spec.model_config("bpr")["epochs"] == 5
    assert spec.model_config("bpr")["dim"] == 16
    assert spec.method_config("sisa")["n_shards"] == 4
    assert spec.out == "runs/x"
    assert len(spec.cells()) == 2 * 2 * 2 * 2 * 2


def test_typo_in_top_level_key_names_the_key(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('modles = ["bpr"]\n')
    with pytest.raises(ConfigError, match=r"'modles'.*did you mean 'models'"):
        load_spec(path)


def test_typo_in_model_config_names_the_key(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("models: [bpr]\nmodel_configs:\n  bpr: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"'epoch'.*did you mean 'epochs'"):
        load_spec(path)


def test_unknown_model_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "grid.toml"
    path.write_text(f'models = ["bpr", "bprr"]\nout = "{out}"\n')
    with pytest.raises(UnknownNameError, match=r"models: unknown model 'bprr'.*'bpr'"):
        load_spec(path)
    assert not out.exists()


def test_unknown_method_selection_and_dataset_are_errors():
    with pytest.raises(UnknownNameError, match="sisaa"):
        spec_from_mapping({"methods": ["sisaa"]})
    with pytest.raises(UnknownNameError, match="did you mean 'core'"):
        spec_from_mapping({"selections": ["cor"]})
    with pytest.raises(UnknownNameError, match="unknown dataset 'ml-100"):
        spec_from_mapping({"datasets": ["ml-100"]})
    with pytest.raises(UnknownNameError, match="model_configs"):
        spec_from_mapping({"model_configs": {"nope": {}}})


@pytest.mark.parametrize("values,match", [
    ({"ratios": [0.0]}, "ratios"),
    ({"ratios": [1.5]}, "ratios"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": [0.5]}, "seeds"),
    ({"models": []}, "models"),
    ({"models": ["bpr", "bpr"]}, "twice"),
    ({"split_ratios": [0.8, 0.3, 0.1]}, "split_ratios"),
    ({"ks": [0]}, "ks"),
    ({"workers": 0}, "workers"),
    ({"model_configs": {"bpr": 3}}, "model_configs"),
])
def test_bad_values_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        spec_from_mapping(values, validate=False)


def test_bad_file_formats(tmp_path):
    bad = tmp_path / "grid.toml"
    bad.write_text("models = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(bad)
    other = tmp_path / "grid.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match="unknown spec format"):
        load_spec(other)
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.toml")


def test_comma_separated_strings_are_lists():
    spec = spec_from_mapping({"models": "bpr,wmf", "ratios": "0.05,0.1", "seeds": "0,1"})
    assert spec.models == ["bpr", "wmf"]
    assert spec.ratios == [0.05, 0.1] and spec.seeds == [0, 1]


def test_cells_cartesian_product_ids_and_reference_first():
    spec = spec_from_mapping({"models": ["bpr"], "methods": ["sisa", "retrain"],
                              "selections": ["core", "edge"], "ratios": [0.05, 0.1],
                              "seeds": [0, 3]})
    cells = enumerate_cells(spec)
    assert len(cells) == 1 * 2 * 2 * 2 * 2
    assert len({c.id for c in cells}) == len(cells)
    assert cells[0] == Cell("ml-100k", "bpr", "retrain", "core", 0.05, 0)
    assert cells[0].id == "ml-100k/bpr/retrain/core/p0.05/seed0"
    # every group's retrain cell comes before the group's other cells
    seen: set = set()
    for c in cells:
        if c.method == "retrain":
            seen.add(c.group)
        else:
            assert c.group in seen
    assert {c.id for c in cells} >= {"ml-100k/bpr/sisa/edge/p0.1/seed3"}


def test_dataset_path_label(ml100k_dir):
    spec = spec_from_mapping({"datasets": [str(ml100k_dir)], "models": ["bpr"],
                              "methods": ["retrain"], "selections": ["core"]})
    assert spec.cells()[0].id.startswith("ml-100k/bpr/retrain/core/")
