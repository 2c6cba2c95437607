"""The ``attack`` kind: profile-pollution attacks on sequential victims, side by side.

Cells: dataset × victim (``models``, sequential only) × target popularity × budget ×
defense × attack × seed. Per (dataset, victim, seed) the **clean victim** is trained once
(a shared artefact, ``_victims/``); each cell draws its target item, pollutes the
training data against the clean victim, retrains the victim and measures
(:func:`trustrec.attacks.run.attack_victim`): the target's exposure before and after
(full catalogue and sampled 1 + 100), clean accuracy and prediction shifts, detector AUC
and precision/recall, the distribution distance, the attack's seconds.

**Targets** by popularity (CREAT's Table 3): the items with training interactions,
ordered by count, split into ``head`` (the top 20 %), ``tail`` (the bottom 50 %) and
``medium`` (the rest); a cell's target is drawn uniformly from its class, seeded by the
seed (the same target for every attack, budget and defense of that seed).

The split defaults to leave-last-out (each user's last item to test, the one before to
validation), the protocol of sequential recommendation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from trustrec.bench.context import GridContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import (
    Configs,
    Folder,
    GridSpec,
    Names,
    Split,
    axis_of,
    check_configs,
    dataset_label,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import PositiveInt, UnitInterval, build_config, to_dict, typed_config
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.seeding import rng

#: Target popularity classes, most popular first.
POPULARITY = ("head", "medium", "tail")
#: Shares of the items (by training count) in the head and in the tail.
HEAD_SHARE, TAIL_SHARE = 0.2, 0.5
#: The folder of the clean victims.
VICTIMS = "_victims"
MODEL_DIR = "model"


def target_item(train: Dataset, popularity: str, seed: int) -> int:
    """The target of a popularity class for a seed (see the module docstring)."""
    counts = train.item_counts()
    items = np.flatnonzero(counts > 0)
    items = items[np.argsort(-counts[items], kind="stable")]
    head, tail = round(HEAD_SHARE * len(items)), round((1 - TAIL_SHARE) * len(items))
    pool = {"head": items[:head], "medium": items[head:tail], "tail": items[tail:]}[popularity]
    return int(rng(seed, "attack-target", popularity).choice(pool))


@typed_config
class AttackSpec(GridSpec):
    """An attack grid: the shared axes (:class:`~trustrec.bench.grid.GridSpec`; ``models``
    are the sequential victims) and

    Attributes:
        attacks: attack names (:data:`~trustrec.attacks.base.ATTACKS`); ``none`` is the
            control every other attack is read against.
        targets: target popularity classes (``head``, ``medium``, ``tail``).
        budgets: shares of users polluted, each in (0, 1].
        per_user: items changed per polluted sequence.
        mode: ``replace`` or ``insert``.
        defenses: ``none``, ``filter`` (detector filtering before retraining) and/or
            ``adversarial`` (adversarial training).
        attack_configs: per attack name, config values overriding its defaults.
        defense_config: options of the defenses
            (:class:`~trustrec.attacks.run.DefenseConfig` without ``kind``).

    Example TOML::

        kind = "attack"
        datasets = ["ml-100k"]
        models = ["narm", "bert4rec"]
        attacks = ["none", "random", "popular", "simalter", "replace", "creat"]
        targets = ["head", "medium", "tail"]
        budgets = [0.01, 0.02]
        seeds = [0, 1, 2]
        out = "runs/attack"
    """

    kind: ClassVar[str] = "attack"
    out: Folder = "runs/attack"
    split: Split = "leave_last_out"
    models: Names = default_list(["sasrec"])
    attacks: Names = default_list(["none", "random", "popular", "simalter", "replace",
                                   "creat"])
    targets: axis_of(Literal["head", "medium", "tail"]) = default_list(["medium"])
    budgets: axis_of(UnitInterval) = default_list([0.01])
    per_user: PositiveInt = 5
    mode: Literal["replace", "insert"] = "replace"
    defenses: axis_of(Literal["none", "filter", "adversarial"]) = default_list(["none"])
    attack_configs: Configs = field(default_factory=dict)
    defense_config: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "attack spec") -> None:
        """Names, configs and victims (sequential models only) are checked; nothing is
        loaded or trained.

        Raises:
            UnknownNameError: an unknown dataset, model or attack.
            ConfigError: a bad config, or a victim that is not a sequential model.
        """
        from trustrec.attacks import ATTACKS
        from trustrec.attacks.run import DefenseConfig
        from trustrec.models import MODELS

        super().validate(where)
        sequential = [n for n in MODELS.names() if MODELS.get(n).scores_from_history]
        for m in self.models:
            if m not in sequential:
                raise ConfigError(f"{where}: models: {m!r} is not a sequential model; "
                                  "profile-pollution victims score from histories "
                                  f"({', '.join(sequential)})")
        for a in self.attacks:
            ATTACKS.get(a)
        check_configs(self.attack_configs, ATTACKS, "attack_configs", where)
        build_config(DefenseConfig, self.defense_config, where=f"{where}: defense_config")

    def cells(self) -> list[AttackCell]:
        """Every cell, ``none`` first within a (dataset, victim, seed, target, budget,
        defense) group."""
        attacks = sorted(self.attacks, key=lambda a: (a != "none", self.attacks.index(a)))
        return [AttackCell(dataset_label(d), m, t, b, df, a, s)
                for d, m, s, t, b, df, a in product(self.datasets, self.models, self.seeds,
                                                    self.targets, self.budgets,
                                                    self.defenses, attacks)]


@dataclass(frozen=True, order=True)
class AttackCell:
    """One point of the attack grid."""

    dataset: str
    model: str
    target: str
    budget: float
    defense: str
    attack: str
    seed: int

    @property
    def id(self) -> str:
        """Stable id and folder: ``ml-100k/narm/tail/b0.01/none/creat/seed0``."""
        return (f"{self.dataset}/{self.model}/{self.target}/b{self.budget:g}/"
                f"{self.defense}/{self.attack}/seed{self.seed}")

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


class AttackContext(GridContext):
    """Datasets, splits and clean victims of one attack run."""

    def victim_config(self, dataset: str, model: str, seed: int) -> dict[str, Any]:
        """Everything a clean victim depends on."""
        return {"dataset": dataset, "data": self.data_config(dataset), "model": model,
                "model_config": self.model_configs[model], "seed": seed,
                "split": self.spec.split}

    def victim_dir(self, dataset: str, model: str, seed: int) -> Path:
        """``_victims/<dataset>/<model>/seed<seed>``."""
        return self.out / VICTIMS / dataset / model / f"seed{seed}"

    def victim(self, dataset: str, model: str, seed: int) -> Any:
        """The clean victim (trained and stored when missing)."""
        from trustrec.attacks.run import fit_victim
        from trustrec.models.base import load_model

        folder = self.victim_dir(dataset, model, seed)

        def build(into: Path) -> dict[str, Any]:
            split = self.split(dataset, seed)
            fit_victim(model, self.model_configs[model], split.train, split.valid, seed,
                       self.progress).save(into / MODEL_DIR)
            return {}

        self.stored(folder, self.victim_config(dataset, model, seed), build)
        return load_model(folder / MODEL_DIR)

    def has_victim(self, dataset: str, model: str, seed: int) -> bool:
        """Whether the clean victim is stored and current."""
        return self.is_stored(self.victim_dir(dataset, model, seed),
                              self.victim_config(dataset, model, seed))


@EXPERIMENTS.register("attack")
class AttackExperiment(Experiment):
    """The profile-pollution experiment kind (see the module docstring)."""

    name = "attack"
    title = "trustrec profile-pollution benchmark"
    spec_class = AttackSpec
    axes = ("dataset", "model", "target", "budget", "defense", "attack", "seed")
    numeric_axes = {"seed": int, "budget": float}
    source_packages = ("data", "evaluate", "models", "train", "attacks")
    report_module = "trustrec.bench.experiments.attack_report"
    private_dirs = (VICTIMS, "plots")

    def context(self, spec: AttackSpec, progress: bool = False) -> AttackContext:
        """Datasets, splits and clean victims."""
        return AttackContext(spec, progress)

    def cell_from_axes(self, axes: dict[str, Any]) -> AttackCell:
        """The cell with these axes."""
        return AttackCell(**axes)

    def stages(self, ctx: AttackContext, pending: Sequence[AttackCell]) -> list[Stage]:
        """The clean victims the pending cells need, skipping stored ones."""
        keys = list(dict.fromkeys((c.dataset, c.model, c.seed) for c in pending))
        return [Stage("victim", [list(k) for k in keys if not ctx.has_victim(*k)])]

    def dependencies(self, cell: AttackCell) -> list[tuple[str, Any]]:
        """Its clean victim."""
        return [("victim", [cell.dataset, cell.model, cell.seed])]

    def describe_key(self, stage: str, key: Any) -> str:
        """``clean victim ml-100k/narm/0``."""
        return f"clean victim {'/'.join(str(v) for v in key)}"

    def run_stage(self, ctx: AttackContext, stage: str, key: Any) -> None:
        """Train and store a clean victim."""
        ctx.victim(*key)

    def cell_config(self, ctx: AttackContext, cell: AttackCell) -> dict[str, Any]:
        """The cell's resolved config."""
        from trustrec.attacks import make_attack
        from trustrec.attacks.run import DefenseConfig

        spec = ctx.spec
        attack = make_attack(cell.attack, **spec.attack_configs.get(cell.attack, {}))
        defense = build_config(DefenseConfig, {**spec.defense_config, "kind": cell.defense})
        return {"cell": cell.axes(), "id": cell.id, "data": ctx.data_config(cell.dataset),
                "model_config": ctx.model_configs[cell.model],
                "attack_config": attack.config_dict(), "defense": to_dict(defense),
                "budget": {"users": cell.budget, "per_user": spec.per_user,
                           "mode": spec.mode},
                "victim": ctx.artefact_fingerprint(ctx.victim_config(
                    cell.dataset, cell.model, cell.seed))}

    def compute_cell(self, ctx: AttackContext, cell: AttackCell) -> CellOutput:
        """Attack the stored clean victim and measure (see the module docstring)."""
        from trustrec.attacks import Budget, make_attack
        from trustrec.attacks.run import DefenseConfig, attack_victim

        spec = ctx.spec
        split = ctx.split(cell.dataset, cell.seed)
        target = target_item(split.train, cell.target, cell.seed)
        result = attack_victim(
            split, cell.model, ctx.model_configs[cell.model],
            make_attack(cell.attack, **spec.attack_configs.get(cell.attack, {})), target,
            Budget(users=cell.budget, per_user=spec.per_user, mode=spec.mode),
            seed=cell.seed,
            defense=build_config(DefenseConfig, {**spec.defense_config,
                                                 "kind": cell.defense}),
            clean=ctx.victim(cell.dataset, cell.model, cell.seed), progress=ctx.progress)
        receipt = result.pollution.receipt()
        return CellOutput(result.metrics, record={
            "target": receipt["target"], "target_index": target,
            "changes": receipt["changes"]})

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """Target HR@10 before → after, detector AUC, attack seconds."""
        g = functools.partial(metric_text, metrics)
        return (f"target hit@10 {g('clean_target_hit@10')} → {g('target_hit@10')} "
                f"(sampled {g('clean_sampled_target_hit@10', '.3f')} → "
                f"{g('sampled_target_hit@10', '.3f')}), ndcg shift {g('ndcg_shift', '+.4f')}, "
                f"pca AUC {g('pca_auc', '.3f')}, attack {g('attack_seconds', '.1f')} s")
