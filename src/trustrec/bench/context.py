"""The shared state of a grid run: datasets, splits and stored artefacts.

:class:`GridContext` loads every dataset of a spec once (applying the protocol's filter)
and splits it once per seed, by the spec's ``split`` (random shares, leave-last-out or a
global temporal cut). Experiment kinds subclass it with their own shared artefacts
(learned models, references, base models ...), each kept in its own folder by
:meth:`GridContext.stored`: built once, with a ``state.json`` whose fingerprint covers
the artefact's config and the source of the code that builds it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from trustrec.bench.collect import read_json
from trustrec.bench.files import write_json
from trustrec.bench.grid import dataset_label, fingerprint
from trustrec.data.dataset import Dataset
from trustrec.data.split import Split, make_split
from trustrec.errors import DataFormatError
from trustrec.fileio import now_iso

#: The record of a stored shared artefact, written last.
STATE_JSON = "state.json"


def is_current(folder: Path, marker: str, fp: str) -> bool:
    """Whether ``folder/marker`` says done with fingerprint ``fp``."""
    f = folder / marker
    if not f.is_file():
        return False
    try:
        state = read_json(f)
    except (DataFormatError, OSError):
        return False
    return (isinstance(state, dict) and state.get("status") == "done"
            and state.get("fingerprint") == fp)


def fresh_folder(folder: Path) -> None:
    """Remove whatever a killed or outdated run left in ``folder`` and recreate it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


class GridContext:
    """Datasets and seeded splits of a grid spec, each loaded or computed once.

    Attributes: ``spec``, ``out`` (its output folder), ``progress``, ``sources`` (label ->
    name or path), ``k`` (the headline cut-off: 20 when measured, else the largest) and
    ``model_configs`` (model name -> its config in the spec).
    """

    #: Subpackages of trustrec whose source the kind's shared artefacts depend on.
    artefact_packages: ClassVar[tuple[str, ...]] = ("data", "evaluate", "models", "train")

    def __init__(self, spec: Any, progress: bool = False) -> None:
        self.spec = spec
        self.out = Path(spec.out)
        self.progress = progress
        self.sources = {dataset_label(d): d for d in spec.datasets}
        self.k = 20 if 20 in spec.ks else max(spec.ks)
        self.model_configs = {m: spec.model_config(m) for m in spec.models}
        self._datasets: dict[str, Dataset] = {}
        self._splits: dict[tuple[str, int], Split] = {}

    @property
    def protocol(self) -> Any:
        """The spec's evaluation protocol (:mod:`trustrec.bench.protocol`)."""
        from trustrec.bench.protocol import get_protocol

        return get_protocol(getattr(self.spec, "protocol", "trustrec"))

    def dataset(self, label: str) -> Dataset:
        """The loaded dataset of a label (loaded once; the protocol's k-core applied)."""
        if label not in self._datasets:
            from trustrec.data.filter import k_core
            from trustrec.data.loaders import load_dataset

            ds = load_dataset(self.sources[label], self.spec.data_dir,
                              progress=self.progress)
            k = self.protocol.k_core
            self._datasets[label] = k_core(ds, k, k) if k else ds
        return self._datasets[label]

    def split(self, label: str, seed: int) -> Split:
        """The dataset's split for a seed (computed once)."""
        key = (label, seed)
        if key not in self._splits:
            self._splits[key] = make_split(self.dataset(label), self.spec.split,
                                           tuple(self.spec.split_ratios), seed)
        return self._splits[key]

    def data_config(self, label: str) -> dict[str, Any]:
        """Where a dataset comes from, how it is filtered and split (protocol and split
        kind are recorded only when not the defaults, so stored states stay current)."""
        extra: dict[str, Any] = {}
        if self.protocol.name != "trustrec":
            extra.update(protocol=self.protocol.name, k_core=self.protocol.k_core)
        if self.spec.split != "random":
            extra["split_kind"] = self.spec.split
        return {"source": self.sources[label], "data_dir": self.spec.data_dir,
                "split": "random_split", "split_ratios": list(self.spec.split_ratios),
                **extra}

    def data_info(self) -> dict[str, dict[str, float]]:
        """Size and density of every dataset of the spec (for the report)."""
        out = {}
        for label in self.sources:
            ds = self.dataset(label)
            cells = max(ds.n_users * ds.n_items, 1)
            out[label] = {"users": ds.n_users, "items": ds.n_items,
                          "interactions": ds.n_interactions,
                          "density": ds.n_interactions / cells}
        return out

    # --------------------------------------------------------------- stored artefacts
    def artefact_fingerprint(self, config: dict[str, Any]) -> str:
        """Fingerprint of a shared artefact: its config and the source of
        :attr:`artefact_packages`."""
        from trustrec.bench.env import source_fingerprint

        return fingerprint({**config, "code": source_fingerprint(*self.artefact_packages)})

    def is_stored(self, folder: Path, config: dict[str, Any]) -> bool:
        """Whether the artefact of ``config`` is stored in ``folder`` and current."""
        return is_current(folder, STATE_JSON, self.artefact_fingerprint(config))

    def stored(self, folder: Path, config: dict[str, Any],
               build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """The record of the artefact of ``config`` in ``folder``, built first when it is
        missing or outdated (another config, or code of :attr:`artefact_packages` changed).

        ``build(folder)`` writes the artefact's files into the emptied folder and returns
        facts for the record (e.g. seconds); ``state.json`` (status, fingerprint, config,
        those facts, finish time) is written last, so a killed build is redone.
        """
        fp = self.artefact_fingerprint(config)
        if not is_current(folder, STATE_JSON, fp):
            fresh_folder(folder)
            facts = build(folder)
            write_json(folder / STATE_JSON, {"status": "done", "fingerprint": fp,
                                             "config": config, **facts,
                                             "finished": now_iso()})
        return read_json(folder / STATE_JSON)


#: The folder of a table grid's shared trained weights.
WEIGHTS_DIR = "_weights"


class TableContext(GridContext):
    """The shared state of a grid over classification tables (fair classification,
    federated unlearning): ``load(name)`` reads a table once; there are no splits here
    (each kind splits by seed itself) and no interaction statistics for the report.
    Weights several cells start from (a trained original, a joint model) are trained once
    and stored (:meth:`weights`)."""

    artefact_packages: ClassVar[tuple[str, ...]] = ("data", "federated", "fairclf",
                                                    "fedunlearn")

    def __init__(self, spec: Any, load: Callable[[str], Any], progress: bool = False) -> None:
        self.spec = spec
        self.out = Path(spec.out)
        self.progress = progress
        self.sources = {d: d for d in spec.datasets}
        self.k = 10
        self.model_configs = {}
        self._load = load
        self._tables: dict[str, Any] = {}

    def dataset(self, label: str) -> Any:
        """The table of ``label`` (loaded once)."""
        if label not in self._tables:
            self._tables[label] = self._load(label)
        return self._tables[label]

    def split(self, label: str, seed: int) -> Split:
        """Not here: each table kind splits its rows itself."""
        raise TypeError("a table grid has no interaction splits")

    def data_config(self, label: str) -> dict[str, Any]:
        """Where a table comes from."""
        return {"source": label, "data_dir": getattr(self.spec, "data_dir", None)}

    def data_info(self) -> dict[str, dict[str, float]]:
        """None: the kinds' reports describe their tables themselves."""
        return {}

    def weights_dir(self, key: Sequence[Any]) -> Path:
        """``_weights/<key parts>``."""
        return self.out.joinpath(WEIGHTS_DIR, *(str(k).replace(":", "-") for k in key))

    def weights(self, key: Sequence[Any], config: dict[str, Any],
                train: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
        """The weights of ``key`` (``train()`` run and stored as safetensors when missing or
        outdated) and the seconds their training took."""
        import time

        from safetensors.torch import load_file, save_file

        def build(into: Path) -> dict[str, Any]:
            t0 = time.perf_counter()
            params = train()
            seconds = time.perf_counter() - t0
            save_file({k: v.contiguous() for k, v in params.items()},
                      str(into / "weights.safetensors"))
            return {"seconds": seconds}

        folder = self.weights_dir(key)
        record = self.stored(folder, config, build)
        return load_file(str(folder / "weights.safetensors")), float(record["seconds"])

    def has_weights(self, key: Sequence[Any], config: dict[str, Any]) -> bool:
        """Whether the weights of ``key`` are stored and current."""
        return self.is_stored(self.weights_dir(key), config)
