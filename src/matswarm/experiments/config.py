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
from matswarm.privacy.dp import PrivacyConfig


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
        "task": ((str,), "regression", "regression | classification (binary)"),
        "threshold": (
            (int, float),
            None,
            "classification: class 1 is target > threshold (positive = 'above') or "
            "target <= threshold ('below'); unset: the target holds 0/1 labels",
        ),
        "positive": ((str,), "above", "classification: above | below (see threshold)"),
        "featurize": (
            (str,),
            "",
            "files: compute descriptors from a formula column: magpie (needs the "
            "materials extra); '' = tables already hold descriptors",
        ),
        "formula_column": ((str,), "formula", "featurize: column with the chemical formulas"),
        "skip_invalid": ((bool,), False, "featurize: drop rows with invalid formulas (listed)"),
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
        "name": ((str,), "mlp", "mlp | lasso | rnn | lstm | gbdt | masked-mlp | fedmdh"),
        "hidden": ((int,), 32, "hidden size (mlp, rnn, lstm)"),
        "layers": ((int,), 3, "mlp: number of linear layers"),
        "l1": ((int, float), 1e-3, "lasso: L1 penalty"),
        "chunk": ((int,), 21, "rnn/lstm: features per sequence step"),
        "trees": ((int,), 300, "gbdt: number of trees"),
        "depth": ((int,), 5, "gbdt: depth of every tree"),
        "bins": ((int,), 32, "gbdt: histogram bins per feature (quantiles agreed federatedly)"),
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
        "weights": (
            (str,),
            "samples",
            "samples (sample counts) | contribution (max(Shapley value, 0) of the round; "
            "turns on [contribution])",
        ),
    },
    "contribution": {
        "method": (
            (str,),
            "shapley",
            "shapley (exact up to 8 orgs, Monte-Carlo beyond) | shapley-mc | loo",
        ),
        "permutations": ((int,), 64, "shapley-mc: sampled orders per round"),
        "seed": ((int,), 0, "seed of the validation carve and the sampled orders"),
        "val_fraction": ((int, float), 0.2, "fraction of each org's rows kept for validation"),
        "combine": ((str,), "median", "median | pooled: how the orgs' scores are combined"),
        "threshold_mse": ((int, float), None, "admit an update only if its val MSE <= this"),
        "threshold_ratio": (
            (int, float),
            None,
            "admit an update only if its val MSE <= this x the round's start model's",
        ),
        "final_accept_ratio": (
            (int, float),
            1.0,
            "an org accepts the final model if its val MSE <= this x the initial model's",
        ),
    },
    "privacy": {
        "mode": (
            (str,),
            None,
            "local (DP-SGD at each org) | central (noise shares on the "
            "aggregate; record-level needs update = 'gradient'); without mode and epsilon: no DP",
        ),
        "epsilon": ((int, float), None, "target epsilon over all planned rounds (required)"),
        "delta": ((int, float), 1e-5, "target delta"),
        "clip": ((int, float), 1.0, "per-sample gradient L2 bound (standardised units)"),
        "noise_multiplier": (
            (int, float),
            None,
            "fixed sigma (default: calibrated to epsilon over the rounds; a fixed one whose "
            "budget runs out before the last round is refused)",
        ),
        "accountant": ((str,), "rdp", "Opacus accountant: rdp | prv"),
        "unit": (
            (str,),
            "record",
            "record (one row at one org) | org (one org's whole update, DP-FedAvg: central "
            "only, rule 'equal-mean', clip bounds the update's L2 norm; needs many orgs)",
        ),
        "sample_rate": (
            (int, float),
            None,
            "central: common Poisson rate (default batch_size / mean org rows)",
        ),
    },
    "run": {
        "seeds": ((int, list), 3, "number of seeds (0..N-1) or an explicit list"),
        "jobs": ((int,), 2, "parallel worker processes"),
        "output": ((str,), "matswarm-results", "folder for results.json, results.csv, plots"),
    },
}

# Secure aggregation and compression (their own keys; [privacy] also holds the DP keys).
SECAGG_KEYS = ("secure_aggregation", "secagg_clip", "secagg_threshold")
KEYS.setdefault("privacy", {}).update(
    {
        "secure_aggregation": (
            (bool,),
            False,
            "pairwise-masked sums: relay and orgs see only the sum (rule must be 'mean')",
        ),
        "secagg_clip": ((int, float), 1.0, "secure aggregation: per-coordinate clip of updates"),
        "secagg_threshold": ((int,), None, "secure aggregation: Shamir threshold (K//2 + 1)"),
    }
)
KEYS["compression"] = {
    "kind": ((str,), "none", "none | q8 | q4 | topk (error feedback at each org)"),
    "fraction": ((int, float), 0.1, "topk: fraction of coordinates sent"),
    "block": ((int,), 256, "q8/q4: coordinates sharing one scale"),
    "error_feedback": ((bool,), True, "each org keeps what compression dropped for next round"),
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
    #: Contribution accounting and governance ([contribution], [aggregation] weights); None: off.
    contribution: Any = None
    #: ``[compression]`` and the secure-aggregation keys of ``[privacy]`` (None: off).
    compression: Any = None  # matswarm.compression.CompressionSpec
    secure_aggregation: Any = None  # matswarm.privacy.secagg.SecAggConfig
    #: The ``[privacy]`` section (None: no differential privacy).
    privacy: PrivacyConfig | None = None

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
            "contribution": None if self.contribution is None else self.contribution.to_dict(),
            "compression": vars(self.compression) if self.compression is not None else None,
            "secure_aggregation": (
                vars(self.secure_aggregation) if self.secure_aggregation is not None else None
            ),
            **({"privacy": self.privacy.to_dict()} if self.privacy else {}),
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
        methods = list(get("training", "methods"))
        if model.name == "gbdt":  # one sketch round + one per tree level; lr is the shrinkage
            from matswarm.algorithms.histogram import DEFAULT_TREE_LR

            training.setdefault("rounds", 1 + model.trees * model.depth)
            training.setdefault("lr", DEFAULT_TREE_LR)
            if "methods" not in sections.get("training", {}):
                methods = ["solo", "fedgbdt", "joint"]
        for k in ("rounds", "local_steps", "lr", "batch_size"):
            training.setdefault(k, KEYS["training"][k][1])
        seeds_raw = get("run", "seeds")
        seeds = (
            list(range(seeds_raw)) if isinstance(seeds_raw, int) else [int(s) for s in seeds_raw]
        )
        if not seeds:
            raise ConfigError(f"{source}: [run] seeds must name at least one seed")
        agg = dict(sections.get("aggregation", {}))
        weights = agg.pop("weights", "samples")
        contribution = None
        if "contribution" in sections or weights != "samples":
            from matswarm.contrib.policy import ContributionSettings

            c = dict(sections.get("contribution", {}))
            for k in ("val_fraction", "threshold_mse", "threshold_ratio", "final_accept_ratio"):
                if c.get(k) is not None:
                    c[k] = float(c[k])
            try:
                contribution = ContributionSettings(**c, weights=weights)
            except ValueError as exc:
                raise ConfigError(
                    f"{source}: [contribution]/[aggregation] weights: {exc}"
                ) from None
        privacy = _privacy_section(sections.get("privacy"), source)
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
            contribution=contribution,
            privacy=privacy,
        )
        _communication_settings(cfg, sections, source)
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
            rule = self.make_rule()
            for m in self.methods:
                algo = self.algorithm(m)
                check = getattr(algo, "check_model", None)  # federated methods only
                if check is not None:
                    check(self.model, rule)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None
        if self.jobs < 1:
            raise ConfigError(f"{self.source}: [run] jobs must be >= 1, got {self.jobs}")
        self._validate_materials()
        if self.privacy is not None:
            from matswarm.algorithms import FederatedAlgorithm
            from matswarm.privacy.dp import check_compatible

            try:
                for m in self.methods:
                    algo = self.algorithm(m)
                    if isinstance(algo, FederatedAlgorithm):
                        check_compatible(self.privacy, algo, self.model.name, self.rule)
            except ValueError as exc:
                raise ConfigError(f"{self.source}: {exc}") from None
            if self.privacy.unit == "org" and self.contribution is not None:
                raise ConfigError(
                    f"{self.source}: [contribution] scores, thresholds and weighs single "
                    "updates, but [privacy] unit = 'org' protects only their equal-weight sum "
                    "(one update carries 1/sqrt(K) of the noise): choose one"
                )

    def _validate_materials(self) -> None:
        """[data] featurize / task / threshold / positive (see matswarm.data.featurize, schema)."""
        from matswarm.data.featurize import PRESETS
        from matswarm.data.schema import check_task

        preset = self.data.get("featurize")
        if preset and preset not in PRESETS:
            raise ConfigError(
                f"{self.source}: [data] featurize must be one of {', '.join(PRESETS)} "
                f"(or '' for none), got {preset!r}"
            )
        try:
            check_task(
                self.data.get("task", "regression"),
                self.data.get("threshold"),
                self.data.get("positive", "above"),
            )
        except ValueError as exc:
            raise ConfigError(f"{self.source}: [data] {exc}") from None

    def check_privacy_budget(self, org_rows: dict[str, int]) -> None:
        """Plan every private method's budget for these orgs; a budget that runs out before
        the last round is a :class:`ConfigError` naming the fields."""
        if self.privacy is None:
            return
        from matswarm.algorithms import FederatedAlgorithm

        try:
            for m in self.methods:
                algo = self.algorithm(m)
                if isinstance(algo, FederatedAlgorithm):
                    self.privacy.plan(algo, self.rule, org_rows, self.model.name)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None


def _communication_settings(cfg: ExperimentConfig, sections: dict[str, dict], source: str) -> None:
    """``[compression]`` and ``[privacy] secure_aggregation``: build, and refuse combinations
    that cannot work, naming why."""
    from matswarm.compression import CompressionError, CompressionSpec
    from matswarm.privacy.secagg import SecAggConfig, SecAggError

    comp = sections.get("compression", {})
    priv = sections.get("privacy", {})
    try:
        if comp.get("kind", "none") != "none":
            cfg.compression = CompressionSpec(
                kind=comp["kind"],
                fraction=float(comp.get("fraction", 0.1)),
                block=int(comp.get("block", 256)),
                error_feedback=bool(comp.get("error_feedback", True)),
            )
        if priv.get("secure_aggregation", False):
            cfg.secure_aggregation = SecAggConfig(
                clip=float(priv.get("secagg_clip", 1.0)), threshold=priv.get("secagg_threshold")
            )
    except (CompressionError, SecAggError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if cfg.secure_aggregation is not None:
        if cfg.rule != "mean":
            raise ConfigError(
                f"{source}: [privacy] secure_aggregation reveals only the sum of the updates; "
                f"[aggregation] rule {cfg.rule!r} needs every individual update: use 'mean'"
            )
        if cfg.contribution is not None:
            raise ConfigError(
                f"{source}: [contribution] scores every org's individual update, which "
                "[privacy] secure_aggregation hides from everyone: choose one"
            )
        if cfg.compression is not None:
            raise ConfigError(
                f"{source}: [compression] kind {cfg.compression.kind!r} cannot be combined with "
                "[privacy] secure_aggregation (masks live in Z_2^32 on every coordinate; a "
                "quantised or sparse payload would be unmasked to noise): choose one"
            )


def _privacy_section(values: dict[str, Any] | None, source: str) -> PrivacyConfig | None:
    """The differential-privacy keys of ``[privacy]`` as a :class:`PrivacyConfig` (None when
    the section holds none: it may hold only the secure-aggregation keys)."""
    values = {k: v for k, v in (values or {}).items() if k not in SECAGG_KEYS}
    if not values:
        return None
    missing = [k for k in ("mode", "epsilon") if k not in values]
    if missing:
        raise ConfigError(f"{source}: [privacy] needs {' and '.join(missing)}")
    try:
        return PrivacyConfig.from_dict(
            {k: (float(v) if isinstance(v, int) and k != "mode" else v) for k, v in values.items()}
        )
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
