"""The shipped CURE4Rec spec files load, validate fully, and expand to the intended grid.

These tests validate every method name against the registry, so they pass only once all
nine methods (retrain, sisa, receraser, ultrare, laser, scif, ifru, finetune, neggrad) are
registered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trustrec.bench import load_spec

SPECS = Path(__file__).resolve().parents[2] / "benchmarks" / "specs"
METHODS = ["retrain", "sisa", "receraser", "ultrare", "laser", "scif", "ifru", "finetune",
           "neggrad", "noop", "reset-rows"]


@pytest.mark.parametrize(("name", "ratios"), [("cure4rec-ml100k.toml", [0.05]),
                                              ("cure4rec-full.toml", [0.05, 0.1, 0.15, 0.2])])
def test_cure4rec_spec_files(name, ratios):
    spec = load_spec(SPECS / name)  # validates every name and config against the registries
    assert spec.methods == METHODS
    assert spec.models == ["bpr", "wmf"] and spec.datasets == ["ml-100k"]
    assert spec.selections == ["core", "edge", "random"] and spec.grains == ["user"]
    assert spec.ratios == ratios and spec.seeds == [0, 1, 2]
    cells = spec.cells()
    assert len(cells) == 2 * 11 * 3 * len(ratios) * 3
    assert len({c.id for c in cells}) == len(cells)
    # each group's retrain cell comes first
    assert cells[0].method == "retrain"
