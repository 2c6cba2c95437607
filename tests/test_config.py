"""Typed configs: one pydantic mechanism checks types, ranges and choices of every option."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import pytest
from pydantic import Field

from trustrec.cli import parse_assignments
from trustrec.config import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    build_config,
    one_of,
    to_dict,
    typed_config,
)
from trustrec.errors import ConfigError
from trustrec.models import MODELS, make_model
from trustrec.models.bpr import BPRConfig
from trustrec.models.neumf import NeuMFConfig
from trustrec.unlearn import UNLEARNERS, make_unlearner
from trustrec.unlearn.receraser import RecEraserConfig
from trustrec.unlearn.scif import SCIFConfig


@typed_config
class ToyConfig:
    """A config using every kind of rule (and a check across fields)."""

    n: PositiveInt = 3
    low: NonNegativeInt = 0
    high: NonNegativeInt = 10
    rate: PositiveFloat = 0.5
    share: UnitInterval = 1.0
    sizes: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (4, 2)
    mode: Literal["fast", "exact"] = "fast"
    colour: Annotated[str, one_of(lambda: ["red", "green"], "colour")] = "red"
    label: str = "x"
    scale: PositiveFloat | None = None
    on: bool = True

    def __post_init__(self) -> None:
        if self.low >= self.high:
            raise ConfigError(f"ToyConfig: low={self.low} must be below high={self.high}")


def test_every_registered_config_is_typed():
    """Models, unlearning methods and privacy methods (post-training protectors and
    in-training defenses) all declare their rules through typed_config."""
    import trustrec.unlearn  # noqa: F401  (registers every method)
    from trustrec.bench.experiments.privacy import privacy_registries
    from trustrec.privacy.base import DEFENSES, PROTECTORS

    privacy_registries()  # imports (registers) every privacy method
    configs = [MODELS.get(n).Config for n in MODELS.names()]
    configs += [UNLEARNERS.get(n).Config for n in UNLEARNERS.names()]
    configs += [PROTECTORS.get(n).Config for n in PROTECTORS.names()]
    configs += [DEFENSES.get(n).Config for n in DEFENSES.names()]
    assert len(PROTECTORS.names()) >= 5 and len(DEFENSES.names()) >= 2
    for cls in configs:
        assert hasattr(cls, "__pydantic_validator__"), cls.__name__
        assert dataclasses.is_dataclass(cls)
        cls()  # the defaults obey the rules


def test_a_wrong_type_names_the_field_the_rule_and_the_value():
    with pytest.raises(ConfigError, match=r"^BPRConfig\.dim in model 'bpr': Input should be a "
                                          r"valid integer.*\(got 8\.5\)$"):
        make_model("bpr", dim=8.5)
    with pytest.raises(ConfigError, match=r"BPRConfig\.lr: .*valid number.*\(got 'fast'\)"):
        build_config(BPRConfig, {"lr": "fast"})
    with pytest.raises(ConfigError, match=r"BPRConfig\.use_bias: .*valid boolean"):
        build_config(BPRConfig, {"use_bias": "maybe"})
    with pytest.raises(ConfigError, match=r"NeuMFConfig\.layers: .*valid tuple"):
        NeuMFConfig(layers="64,32")


@pytest.mark.parametrize("field", ["dim", "epochs"])
def test_a_boolean_is_not_a_count(field):
    """Lax conversion would read True as 1; a count field refuses a boolean instead."""
    with pytest.raises(ConfigError, match=rf"BPRConfig\.{field}: a count is due, not a "
                                          r"boolean \(got True\)"):
        build_config(BPRConfig, {field: True})
    assert getattr(build_config(BPRConfig, {field: "3"}), field) == 3  # text still converts


@pytest.mark.parametrize("values,match", [
    ({"n": 0}, r"ToyConfig\.n: Input should be greater than 0 \(got 0\)"),          # gt, int
    ({"low": -1}, r"ToyConfig\.low: .*greater than or equal to 0 \(got -1\)"),      # ge
    ({"rate": 0.0}, r"ToyConfig\.rate: Input should be greater than 0 \(got 0\.0\)"),  # gt
    ({"share": 1.5}, r"ToyConfig\.share: .*less than or equal to 1 \(got 1\.5\)"),  # le
    ({"share": 0}, r"ToyConfig\.share: Input should be greater than 0"),            # (0, 1]
    ({"sizes": []}, r"ToyConfig\.sizes: .*at least 1 item"),                        # min_length
    ({"sizes": [4, 0]}, r"ToyConfig\.sizes\.1: .*greater than 0 \(got 0\)"),        # per item
    ({"scale": -2}, r"ToyConfig\.scale: .*greater than 0 \(got -2\)"),              # optional
    ({"rate": math.inf}, r"ToyConfig\.rate: Input should be a finite number"),      # finite
    ({"low": 5, "high": 5}, r"^ToyConfig: low=5 must be below high=5$"),            # across
])
def test_each_rule_kind_is_a_config_error_naming_the_field(values, match):
    with pytest.raises(ConfigError, match=match):
        build_config(ToyConfig, values)
    with pytest.raises(ConfigError, match=match):
        ToyConfig(**values)


def test_model_and_method_ranges():
    with pytest.raises(ConfigError, match=r"BPRConfig\.lr: Input should be greater than 0 "
                                          r"\(got -1\)"):
        BPRConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"BPRConfig\.lr_decay: .*less than or equal to 1"):
        BPRConfig(lr_decay=1.01)
    with pytest.raises(ConfigError, match=r"RecEraserConfig\.capacity: .*greater than or "
                                          r"equal to 1 \(got 0\.5\)"):
        RecEraserConfig(capacity=0.5)
    with pytest.raises(ConfigError, match=r"NeuMFConfig\.layers\.1 in model 'neumf': .*greater "
                                          r"than 0 \(got 0\)"):
        make_model("neumf", layers=[8, 0])


def test_a_choice_error_lists_the_choices():
    with pytest.raises(ConfigError, match=r"ToyConfig\.mode: Input should be 'fast' or "
                                          r"'exact' \(got 'slow'\)$"):
        ToyConfig(mode="slow")
    with pytest.raises(ConfigError, match=r"SCIFConfig\.solver in method 'scif': Input should "
                                          r"be 'cg' or 'lissa' \(got 'lisa'; did you mean "
                                          r"'lissa'\?\)"):
        make_unlearner("scif", "bpr", {"dim": 8}, solver="lisa")
    # an open set (a registry): checked when the value is, with the closest name
    with pytest.raises(ConfigError, match=r"ToyConfig\.colour: unknown colour 'blue'; "
                                          r"available: green, red$"):
        ToyConfig(colour="blue")
    with pytest.raises(ConfigError, match=r"SISAConfig\.aggregation in method 'sisa': unknown "
                                          r"aggregation 'ownr' \(did you mean 'owner'\?\)"):
        make_unlearner("sisa", "bpr", {"dim": 8}, aggregation="ownr")


def test_direct_construction_and_replace_are_checked_too():
    with pytest.raises(ConfigError, match=r"BPRConfig\.dim: Input should be greater than 0"):
        BPRConfig(dim=0)
    with pytest.raises(ConfigError, match=r"SCIFConfig\.iterations: .*greater than 0"):
        dataclasses.replace(SCIFConfig(), iterations=0)
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' for BPRConfig "
                                          r"\(did you mean 'epochs'\?\)"):
        BPRConfig(epoch=3)
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' for BPRConfig in model "
                                          r"'bpr' \(did you mean 'epochs'\?\)"):
        make_model("bpr", epoch=3)


def test_typed_configs_stay_dataclasses():
    cfg = BPRConfig(dim=16)
    assert [f.name for f in dataclasses.fields(cfg)][:2] == ["dim", "lr"]
    assert dataclasses.asdict(cfg)["dim"] == 16 and to_dict(cfg) == dataclasses.asdict(cfg)
    assert dataclasses.replace(cfg, lr=0.5) == BPRConfig(dim=16, lr=0.5)
    assert build_config(BPRConfig, to_dict(cfg)) == cfg


def test_text_is_converted_by_the_field_type():
    """The CLI's KEY=VALUE text is converted by each field's type, not guessed."""
    values = parse_assignments(["use_bias=false", "dim=32", "lr=0.1"])
    assert values == {"use_bias": "false", "dim": "32", "lr": "0.1"}
    cfg = build_config(BPRConfig, values)
    assert cfg.use_bias is False and cfg.dim == 32 and cfg.lr == 0.1
    assert type(cfg.dim) is int and type(cfg.lr) is float
    with pytest.raises(ConfigError, match=r"BPRConfig\.dim: .*valid integer.*\(got '8\.5'\)"):
        build_config(BPRConfig, parse_assignments(["dim=8.5"]))
    toy = build_config(ToyConfig, parse_assignments(
        ["label=1", "on=0", "scale=null", "sizes=[8, 4]", "mode=exact", "rate=2"]))
    assert toy.label == "1" and toy.on is False and toy.scale is None
    assert toy.sizes == (8, 4) and toy.mode == "exact" and toy.rate == 2.0
    assert build_config(NeuMFConfig, {"layers": "[64, 32]"}).layers == (64, 32)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["dim"])


def test_given_model_options_are_kept_typed():
    u = make_unlearner("sisa", "bpr", {"dim": "8", "use_bias": "false"}, n_shards="3")
    assert u.model_config == {"dim": 8, "use_bias": False} and u.config.n_shards == 3
    r = make_unlearner("receraser", "bpr", {"dim": 8},
                       pretrain_config='{"dim": "4", "epochs": 2}')
    assert r.config.pretrain_config == {"dim": 4, "epochs": 2}
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' for WMFConfig"):
        make_unlearner("receraser", "bpr", {"dim": 8}, pretrain_config={"epoch": 3})


def test_privacy_configs_check_ranges_and_choices():
    from trustrec.privacy import make_defense, make_protector

    with pytest.raises(ConfigError, match=r"PoTAUU2UConfig\.order in method 'pot-au-u2u': "
                                          r"Input should be 1 or 2 \(got 3\)"):
        make_protector("pot-au-u2u", order=3)
    assert make_protector("pot-au-u2u", order="1").config.order == 1  # CLI text
    with pytest.raises(ConfigError, match=r"RAIDConfig\.solver in defense 'raid': Input "
                                          r"should be 'exact' or 'gaussian'"):
        make_defense("raid", solver="sinkhorn")
    with pytest.raises(ConfigError, match=r"AdversarialConfig\.warmup_epochs.*greater "
                                          r"than 0 \(got 0\)"):
        make_defense("adversarial", warmup_epochs=0)
    assert make_defense("adversarial", warmup_epochs="null").config.warmup_epochs is None
    with pytest.raises(ConfigError, match=r"LegoConfig\.classifier in method 'lego': .*"
                                          r"unknown family 'kernal' \(did you mean "
                                          r"'kernel'\?\)"):
        make_protector("lego", classifier="kernel+kernal")
    assert make_protector("lego", classifier="kernel+linear").config.classifier == \
        "kernel+linear"
    with pytest.raises(ConfigError, match=r"HideTableConfig\.mode.*'random' or 'zero'"):
        make_protector("hide-table", mode="shuffle")
    with pytest.raises(ConfigError, match=r"OutputNoiseConfig\.sigma in method .*greater than 0"):
        make_protector("output-noise", sigma=0)
