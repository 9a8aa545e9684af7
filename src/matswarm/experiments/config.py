"""Experiment configuration: one TOML file describes data, split, model, methods, aggregation,
training schedule and seeds. Every key is documented in :data:`KEYS` (shown by
``matswarm run --help``); unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matswarm.aggregation import make_rule
from matswarm.algorithms import (
    ALGORITHMS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCAL_STEPS,
    DEFAULT_LR,
    DEFAULT_ROUNDS,
    Algorithm,
    make_algorithm,
)
from matswarm.data import SplitSpec
from matswarm.models import ModelSpec


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file, section and key."""


# section -> key -> (type(s), default, help)
KEYS: dict[str, dict[str, tuple[tuple[type, ...], Any, str]]] = {
    "data": {
        "source": ((str,), "perovskite", "perovskite | files | synthetic"),
        "path": (
            (str,),
            None,
            "perovskite: folder with the four CSVs (else resolver: "
            "MATSWARM_DATA, user cache, download)",
        ),
        "train": (
            (list,),
            None,
            "files: one CSV/Parquet per organisation (paper-like split), "
            "or a single file to be split",
        ),
        "test": ((str,), None, "files: held-out test table"),
        "target": ((str,), "e_form", "target column"),
        "unit": ((str,), "eV/atom", "target unit used in every reported metric"),
        "categorical": ((str,), "drop", "non-numeric low-cardinality columns: drop | onehot"),
        "exclude": ((list,), [], "columns never used as features (e.g. leaking properties)"),
        "heterogeneous": (
            (bool,),
            False,
            "files: orgs may hold different columns (union schema, missing columns named)",
        ),
        "rows": ((int,), 3694, "synthetic: training rows"),
        "features": ((int,), 147, "synthetic: feature columns"),
        "label_shift": ((int, float), 1.0, "synthetic: per-org label shift"),
        "noise": ((int, float), 0.1, "synthetic: label noise std"),
    },
    "split": {
        "kind": (
            (str,),
            "paper",
            "paper | iid | label-quantile | dirichlet | quantity | feature-partition",
        ),
        "orgs": ((int,), 3, "number of organisations K (2..50)"),
        "alpha": ((int, float), 0.5, "dirichlet: concentration (small = strong label skew)"),
        "ratios": ((list,), [], "quantity: size ratios, e.g. [1, 10, 15]"),
        "feature_fraction": ((int, float), 1.0, "fraction of features each org holds"),
        "seed": ((int,), 0, "seed of the random split"),
        "overlap": (
            (int, float),
            0.5,
            "feature-partition: fraction of columns every org holds (the rest: one org each)",
        ),
    },
    "model": {
        "name": ((str,), "mlp", "mlp | lasso | rnn | lstm | masked-mlp | fedmdh"),
        "hidden": ((int,), 32, "hidden size (mlp, rnn, lstm)"),
        "layers": ((int,), 3, "mlp: number of linear layers"),
        "l1": ((int, float), 1e-3, "lasso: L1 penalty"),
        "chunk": ((int,), 21, "rnn/lstm: features per sequence step"),
    },
    "training": {
        "methods": (
            (list,),
            ["solo", "fedavg", "matswarm", "joint"],
            f"methods to compare: {', '.join(ALGORITHMS)}",
        ),
        "rounds": (
            (int,),
            DEFAULT_ROUNDS,
            "federated rounds (baselines: rounds*local_steps steps)",
        ),
        "local_steps": ((int,), DEFAULT_LOCAL_STEPS, "local minibatch steps per round"),
        "lr": ((int, float), DEFAULT_LR, "local Adam learning rate"),
        "batch_size": ((int,), DEFAULT_BATCH_SIZE, "minibatch size"),
        "gamma": ((int, float), None, "matswarm: alignment weight (Eq. 1)"),
        "lam": ((int, float), None, "matswarm: parameter-norm weight (Eq. 1)"),
        "mu": ((int, float), None, "fedprox: proximal weight"),
        "server_lr": ((int, float), None, "fedavg family: server learning rate"),
        "update": ((str,), None, "fedavg/fedprox/fedavgm/fedadam: delta (model) | gradient"),
        "momentum": ((int, float), None, "fedavgm: server momentum"),
        "align": ((bool,), None, "fedmdh: masked union encoder (false: shared columns only)"),
        "generator": ((bool,), None, "fedmdh: federated conditional generator (model fedmdh)"),
        "distill": ((bool,), None, "fedmdh: regression distillation from the global model"),
        "kd": ((int, float), None, "fedmdh: distillation weight on synthetic rows"),
        "kd_real": ((int, float), None, "fedmdh: distillation weight on the org's own rows"),
        "synthetic": ((int, float), None, "fedmdh: synthetic rows per real row in a batch"),
    },
    "aggregation": {
        "rule": (
            (str,),
            "mean",
            "mean | median | trimmed-mean | krum | multikrum | geomed | centered-clipping | "
            "bulyan; prefix 'nnm+' for nearest-neighbour mixing first (e.g. nnm+geomed)",
        ),
        "f": ((int,), None, "assumed Byzantine orgs (trimmed-mean, krum, multikrum, bulyan, nnm)"),
        "m": ((int,), None, "multikrum: updates averaged (default n - f)"),
        "tau": ((int, float), None, "centered-clipping: radius (default: median distance)"),
        "iters": ((int,), None, "centered-clipping: iterations"),
        "tol": ((int, float), None, "geomed: relative tolerance"),
        "max_iter": ((int,), None, "geomed: iteration cap"),
    },
    "run": {
        "seeds": ((int, list), 3, "number of seeds (0..N-1) or an explicit list"),
        "jobs": ((int,), 2, "parallel worker processes"),
        "output": ((str,), "matswarm-results", "folder for results.json, results.csv, plots"),
    },
}

# Which algorithm accepts which method-specific key.
_METHOD_KEYS = {
    "gamma": ("matswarm",),
    "lam": ("matswarm",),
    "mu": ("fedprox",),
    "server_lr": ("fedavg", "fedprox", "fedavgm", "fedadam", "fedmdh"),
    "update": ("fedavg", "fedprox", "fedavgm", "fedadam"),
    "momentum": ("fedavgm",),
    **{k: ("fedmdh",) for k in ("align", "generator", "distill", "kd", "kd_real", "synthetic")},
}


def keys_help() -> str:
    """Every section and key with its default and meaning (for ``--help``)."""
    lines = []
    for section, keys in KEYS.items():
        lines.append(f"[{section}]")
        for key, (_, default, text) in keys.items():
            lines.append(f"  {key} = {default!r}  # {text}")
    return "\n".join(lines)


@dataclass
class ExperimentConfig:
    data: dict[str, Any] = field(default_factory=dict)
    split: SplitSpec = field(default_factory=SplitSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    methods: list[str] = field(default_factory=lambda: ["solo", "fedavg", "matswarm", "joint"])
    training: dict[str, Any] = field(default_factory=dict)
    rule: str = "mean"
    rule_params: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    jobs: int = 2
    output: str = "matswarm-results"
    source: str = "<defaults>"

    def algorithm(self, method: str) -> Algorithm:
        common = {
            k: self.training[k]
            for k in ("rounds", "local_steps", "lr", "batch_size")
            if k in self.training
        }
        specific = {
            k: v
            for k, v in self.training.items()
            if k in _METHOD_KEYS and method in _METHOD_KEYS[k]
        }
        return make_algorithm(method, **common, **specific)

    def make_rule(self):
        return make_rule(self.rule, **self.rule_params)

    def describe(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "split": vars(self.split) | {"ratios": list(self.split.ratios)},
            "model": vars(self.model),
            "methods": self.methods,
            "training": {m: self.algorithm(m).get_params() for m in self.methods},
            "aggregation": {"rule": self.rule, **self.rule_params},
            "seeds": self.seeds,
        }

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(raw, source=str(path), base=path.parent)

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], source: str = "<dict>", base: Path | None = None
    ) -> ExperimentConfig:
        sections: dict[str, dict[str, Any]] = {}
        for section, values in raw.items():
            if section not in KEYS:
                raise ConfigError(
                    f"{source}: unknown section [{section}]; valid sections: {', '.join(KEYS)}"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section}] must be a table of keys")
            for key, value in values.items():
                if key not in KEYS[section]:
                    raise ConfigError(
                        f"{source}: unknown key {key!r} in [{section}]; valid keys: "
                        f"{', '.join(KEYS[section])}"
                    )
                types = KEYS[section][key][0]
                if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                    names = " or ".join(t.__name__ for t in types)
                    raise ConfigError(f"{source}: [{section}] {key} must be {names}, got {value!r}")
            sections[section] = dict(values)

        def get(section: str, key: str) -> Any:
            return sections.get(section, {}).get(key, KEYS[section][key][1])

        data = {k: get("data", k) for k in KEYS["data"]}
        if base is not None:  # relative paths in a config file are relative to the file
            for k in ("path", "test"):
                if data[k] is not None:
                    data[k] = (
                        str((base / data[k]).resolve())
                        if not Path(data[k]).is_absolute()
                        else data[k]
                    )
            if data["train"] is not None:
                data["train"] = [
                    str(p if Path(p).is_absolute() else (base / p).resolve()) for p in data["train"]
                ]
        try:
            split = SplitSpec(
                kind=get("split", "kind"),
                orgs=get("split", "orgs"),
                alpha=float(get("split", "alpha")),
                ratios=tuple(float(r) for r in get("split", "ratios")),
                feature_fraction=float(get("split", "feature_fraction")),
                seed=get("split", "seed"),
                overlap=float(get("split", "overlap")),
            )
            if split.kind == "quantity":
                split = SplitSpec(**(vars(split) | {"orgs": len(split.ratios)}))
            model = ModelSpec(**{k: get("model", k) for k in KEYS["model"]})
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        training = {k: v for k, v in sections.get("training", {}).items() if k != "methods"}
        for k in ("rounds", "local_steps", "lr", "batch_size"):
            training.setdefault(k, KEYS["training"][k][1])
        methods = list(get("training", "methods"))
        seeds_raw = get("run", "seeds")
        seeds = (
            list(range(seeds_raw)) if isinstance(seeds_raw, int) else [int(s) for s in seeds_raw]
        )
        if not seeds:
            raise ConfigError(f"{source}: [run] seeds must name at least one seed")
        agg = sections.get("aggregation", {})
        cfg = cls(
            data=data,
            split=split,
            model=model,
            methods=methods,
            training=training,
            rule=agg.get("rule", "mean"),
            rule_params={k: v for k, v in agg.items() if k != "rule"},
            seeds=seeds,
            jobs=get("run", "jobs"),
            output=get("run", "output"),
            source=source,
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Build every algorithm and the rule once so bad values fail before any training."""
        for k, owners in _METHOD_KEYS.items():
            if k in self.training and not any(m in self.methods for m in owners):
                raise ConfigError(
                    f"{self.source}: [training] {k} applies to {', '.join(owners)}, "
                    f"which is not among methods {self.methods}"
                )
        try:
            for m in self.methods:
                self.algorithm(m)
            self.make_rule()
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None
        if self.jobs < 1:
            raise ConfigError(f"{self.source}: [run] jobs must be >= 1, got {self.jobs}")
