"""Federated datasets: one encoded private table per organisation plus an optional test table.

Raw values stay in each :class:`OrgTable`; models see them only through the consortium's
:class:`~matswarm.data.scaling.Standardizer` (fitted from per-org sufficient statistics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from matswarm.data.errors import DataError
from matswarm.data.scaling import Standardizer
from matswarm.data.schema import CategoricalPolicy, TaskSchema


@dataclass(frozen=True)
class OrgTable:
    """One organisation's encoded table (raw units, float64) and where it came from.

    ``feature_mask`` marks the schema features this org actually holds (all by default): one
    boolean per column, or one per cell (``(n, d)``) for a pooled table whose rows come from
    orgs with different columns. The raw values of a column an org does not hold are
    placeholders that nothing reads: scaling statistics skip them and
    :meth:`FederatedDataset.standardized` replaces them (see ``FederatedDataset.missing``).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    source: str
    feature_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.X) == 0:
            raise DataError(f"organisation {self.name!r} has no rows", source=self.source)
        if len(self.X) != len(self.y):
            raise DataError(
                f"{len(self.X)} feature rows but {len(self.y)} targets", source=self.source
            )

    @property
    def n(self) -> int:
        return len(self.y)

    def subset(
        self, rows: np.ndarray, name: str | None = None, source: str | None = None
    ) -> OrgTable:
        mask = self.feature_mask
        if mask is not None and mask.ndim == 2:
            mask = mask[rows]
        return replace(
            self,
            name=name or self.name,
            X=self.X[rows],
            y=self.y[rows],
            source=source or self.source,
            feature_mask=mask,
        )

    def cell_mask(self) -> np.ndarray:
        """``(n, d)`` booleans: which cells hold a value this org measured."""
        if self.feature_mask is None:
            return np.ones(self.X.shape, dtype=bool)
        return np.broadcast_to(np.asarray(self.feature_mask, dtype=bool), self.X.shape).copy()


@dataclass(frozen=True)
class StandardizedOrg:
    """What local training sees: float32 standardised arrays of one organisation.

    For a ``classification`` task ``y`` holds the 0/1 labels unscaled.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str = "regression"

    @property
    def n(self) -> int:
        return len(self.y)


MISSING = ("zero", "nan")


@dataclass
class FederatedDataset:
    """Organisations' tables under one schema, with a held-out test table.

    ``missing`` is what a model sees in a column an org does not hold: ``"zero"`` (the
    consortium mean after standardisation, for models that read every column) or ``"nan"``
    (for mask-aware models such as ``masked-mlp``, which turn NaN into a mask themselves). A
    missing column is never filled with another organisation's values.
    """

    schema: TaskSchema
    orgs: list[OrgTable]
    test: OrgTable | None = None
    description: str = ""
    missing: str = "zero"
    standardizer: Standardizer = field(init=False)

    def __post_init__(self) -> None:
        if len(self.orgs) < 1:
            raise DataError("a federated dataset needs at least one organisation")
        names = [o.name for o in self.orgs]
        if len(set(names)) != len(names):
            raise DataError(f"organisation names must be unique, got {names}")
        d = self.schema.n_features
        for org in [*self.orgs, *([self.test] if self.test is not None else [])]:
            if org.X.shape[1] != d:
                raise DataError(
                    f"{org.name!r} has {org.X.shape[1]} features, the schema has {d}",
                    source=org.source,
                )
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}, got {self.missing!r}")
        # Scaling statistics: per-org sums, combined; a column's statistics come only from the
        # organisations that hold it.
        masks = [o.feature_mask for o in self.orgs]
        self.standardizer = Standardizer.federated(
            ((o.X, o.y) for o in self.orgs), masks if any(m is not None for m in masks) else None
        )
        if self.schema.task == "classification":  # 0/1 labels are not scaled
            self.standardizer = self.standardizer.with_identity_y()

    @property
    def held(self) -> np.ndarray:
        """Per schema feature: does at least one organisation hold it?"""
        out = np.zeros(self.schema.n_features, dtype=bool)
        for o in self.orgs:
            out |= o.cell_mask().any(axis=0)
        return out

    @property
    def org_names(self) -> list[str]:
        return [o.name for o in self.orgs]

    def standardized(self, org: OrgTable) -> StandardizedOrg:
        X = self.standardizer.transform_x(org.X)
        fill = np.float32(0.0 if self.missing == "zero" else np.nan)
        if org.feature_mask is not None:
            X[~org.cell_mask()] = fill
        if any(o.feature_mask is not None for o in self.orgs):
            # A column no organisation holds was never trained on: nobody's model reads it.
            X[:, ~self.held] = fill
        return StandardizedOrg(org.name, X, self.standardizer.transform_y(org.y), self.schema.task)

    def standardized_orgs(self) -> list[StandardizedOrg]:
        return [self.standardized(o) for o in self.orgs]

    def standardized_test(self) -> StandardizedOrg:
        if self.test is None:
            raise DataError("this dataset has no test table")
        return self.standardized(self.test)

    def pooled(self) -> OrgTable:
        """All organisations' rows together: only for the Joint upper-bound baseline."""
        return pool_tables(self.orgs, "joint", "+".join(o.source for o in self.orgs))

    def with_orgs(
        self, orgs: Sequence[OrgTable], description: str | None = None
    ) -> FederatedDataset:
        return FederatedDataset(
            self.schema, list(orgs), self.test, description or self.description, self.missing
        )

    def with_missing(self, missing: str) -> FederatedDataset:
        """The same dataset presenting missing columns as ``"zero"`` or ``"nan"``."""
        return FederatedDataset(self.schema, self.orgs, self.test, self.description, missing)

    def carve_validation(
        self, fraction: float = 0.2, seed: int = 0
    ) -> tuple[FederatedDataset, FederatedDataset]:
        """Split each org's rows into train/validation (for choosing hyperparameters).

        Returns ``(train, validation)`` datasets; the validation dataset's ``test`` is the union
        of the carved rows, so the test table is never looked at while tuning.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        rng = np.random.default_rng(seed)
        train, val = [], []
        for org in self.orgs:
            perm = rng.permutation(org.n)
            k = max(1, round(org.n * fraction))
            val.append(org.subset(perm[:k]))
            train.append(org.subset(perm[k:]))
        val_pool = pool_tables(val, "validation", "validation rows carved from each org")
        train_ds = FederatedDataset(
            self.schema, train, val_pool, self.description + " (train)", self.missing
        )
        return train_ds, FederatedDataset(self.schema, val, val_pool, "validation", self.missing)


def pool_tables(tables: Sequence[OrgTable], name: str, source: str) -> OrgTable:
    """Rows of several tables in one; per-cell masks when the tables hold different columns."""
    masked = any(t.feature_mask is not None for t in tables)
    return OrgTable(
        name=name,
        X=np.concatenate([t.X for t in tables]),
        y=np.concatenate([t.y for t in tables]),
        source=source,
        feature_mask=np.concatenate([t.cell_mask() for t in tables]) if masked else None,
    )


def build_dataset(
    org_tables: Mapping[str, tuple[pd.DataFrame, str]],
    target: str,
    *,
    test: tuple[pd.DataFrame, str] | None = None,
    unit: str = "eV/atom",
    categorical: CategoricalPolicy = "drop",
    exclude: Sequence[str] = (),
    schema: TaskSchema | None = None,
    description: str = "",
    task: str = "regression",
    threshold: float | None = None,
    positive: str = "above",
    heterogeneous: bool = False,
) -> FederatedDataset:
    """Validate and encode each org's table under one schema.

    ``org_tables`` maps org name to ``(table, source)`` where ``source`` names the file for error
    messages. Without an explicit ``schema`` one is inferred from each org and they must agree:
    a column present in one org's schema but not another's is an error that names both; with
    ``heterogeneous=True`` they need not: the task's features are the union of the orgs'
    numeric columns and each org is declared to hold its own (``TaskSchema.org_features``). An
    explicit schema with ``org_features`` is honoured the same way. The test table must hold
    every feature. ``task``/``threshold``/``positive`` define a classification task (see
    :class:`TaskSchema`).
    """
    if not org_tables:
        raise DataError("no organisation tables given")
    if schema is None and heterogeneous:
        schema = _union_schema(org_tables, target, unit, exclude)
    if schema is None:
        inferred = {
            name: TaskSchema.infer(
                table,
                target,
                unit=unit,
                categorical=categorical,
                exclude=exclude,
                source=src,
                task=task,
                threshold=threshold,
                positive=positive,
            )
            for name, (table, src) in org_tables.items()
        }
        names = list(inferred)
        ref_name = names[0]
        schema = inferred[ref_name]
        for name in names[1:]:
            _check_agree(schema, inferred[name], org_tables[ref_name][1], org_tables[name][1])
    orgs = []
    for name, (table, src) in org_tables.items():
        X, y, mask = schema.encode_org(table, src, name)
        orgs.append(OrgTable(name=name, X=X, y=y, source=src, feature_mask=mask))
    test_table = None
    if test is not None:
        tX, ty = schema.encode(test[0], test[1])
        assert ty is not None
        test_table = OrgTable(name="test", X=tX, y=ty, source=test[1])
    return FederatedDataset(schema, orgs, test_table, description)


def _union_schema(
    org_tables: Mapping[str, tuple[pd.DataFrame, str]],
    target: str,
    unit: str,
    exclude: Sequence[str],
) -> TaskSchema:
    """The union of every org's numeric columns (first-seen order), each org declared to hold
    its own."""
    features: list[str] = []
    idents: list[str] = []
    own: dict[str, tuple[str, ...]] = {}
    for name, (table, src) in org_tables.items():
        s = TaskSchema.infer(
            table, target, unit=unit, exclude=[c for c in exclude if c in table], source=src
        )
        own[name] = s.features
        features += [f for f in s.features if f not in set(features)]
        idents += [c for c in s.identifiers if c not in set(idents)]
    clash = [c for c in idents if c in set(features)]
    if clash:
        raise DataError(
            f"column {clash[0]!r} is numeric in one organisation's table and not in another's",
            column=clash[0],
        )
    return TaskSchema(target, tuple(features), unit, tuple(idents), org_features=own)


def _check_agree(a: TaskSchema, b: TaskSchema, src_a: str, src_b: str) -> None:
    if a.features == b.features:
        return
    only_a = [f for f in a.features if f not in set(b.features)]
    only_b = [f for f in b.features if f not in set(a.features)]
    if not only_a and not only_b:
        raise DataError(
            f"feature columns appear in a different order than in {src_a}; "
            "pass an explicit schema to fix the order",
            source=src_b,
        )
    parts = []
    if only_a:
        parts.append(f"{only_a[:5]} are features in {src_a} but not here")
    if only_b:
        parts.append(f"{only_b[:5]} are features here but not in {src_a}")
    raise DataError(
        "organisation schemas disagree: "
        + "; ".join(parts)
        + " (a column that is numeric in one org and text in another also counts)",
        source=src_b,
        column=(only_b or only_a)[0],
    )
