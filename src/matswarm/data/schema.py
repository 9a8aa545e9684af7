"""Task schema: which columns are the target, the features and the identifiers, and how a
private table is turned into a numeric matrix that every organisation encodes identically.

Column rule (applied by :meth:`TaskSchema.infer`, and documented in the README):

* the **target** column is named by the task; it is never a feature;
* **numeric** columns (every value parses as a finite number) are features;
* **non-numeric** columns are never fed to a model as text. A non-numeric column with at most
  ``max_categories`` distinct values is *categorical*; anything else (formulas, compositions,
  element symbols such as ``atom a``) is an *identifier* and dropped;
* categorical columns are dropped by default (``categorical="drop"``) or one-hot encoded with
  ``categorical="onehot"``; the categories are then frozen in the schema (sorted), so every
  organisation produces the same feature order, and a category an org has that the schema does
  not list is an error rather than a silent all-zero row;
* columns listed in ``exclude`` are dropped whatever their type (e.g. other target properties
  that would leak the label).

Classification (``task="classification"``): the target column holds 0/1 (or true/false)
labels, or with a ``threshold`` it is a numeric column turned into labels: class 1 is
``target > threshold`` (``positive="above"``, e.g. band gap > 0: non-metal) or
``target <= threshold`` (``positive="below"``, e.g. energy above hull <= 0.05: stable). These
three settings are part of the schema (and so of the task spec hash) only for classification,
so a regression schema's digest is what it always was.

On the perovskite data (154 columns: target ``e_form``; non-numeric ``formula``, ``atom a``,
``atom b``, ``composition``, ``composition_oxid``, ``lowest distortion``) the default rule keeps
the paper's 147 numeric descriptors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from matswarm.data.errors import DataError

CategoricalPolicy = Literal["drop", "onehot"]
TASKS = ("regression", "classification")
POSITIVE = ("above", "below")


@dataclass(frozen=True)
class TaskSchema:
    """The agreed layout of a task's tables.

    ``features`` is the ordered list of *encoded* feature names: plain numeric columns keep their
    name, one-hot columns are named ``"column=category"``.

    ``org_features`` (optional) declares, per organisation, which of the task's features it
    holds (heterogeneous feature spaces): an org's table may then lack every other feature;
    see :meth:`encode_org`.
    """

    target: str
    features: tuple[str, ...]
    unit: str = "eV/atom"
    identifiers: tuple[str, ...] = ()
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    task: str = "regression"
    threshold: float | None = None
    positive: str = "above"
    org_features: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task(self.task, self.threshold, self.positive)
        known = set(self.features)
        for org, cols in self.org_features.items():
            unknown = [c for c in cols if c not in known]
            if unknown:
                raise DataError(
                    f"org_features[{org!r}] names columns that are not task features: "
                    f"{_preview(unknown)}",
                    column=unknown[0],
                )

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        return tuple(f for f in self.features if not self._is_onehot(f))

    def _is_onehot(self, name: str) -> bool:
        col, sep, _ = name.partition("=")
        return bool(sep) and col in self.categories

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def infer(
        cls,
        table: pd.DataFrame,
        target: str,
        *,
        unit: str = "eV/atom",
        categorical: CategoricalPolicy = "drop",
        max_categories: int = 10,
        exclude: Iterable[str] = (),
        source: str = "<table>",
        task: str = "regression",
        threshold: float | None = None,
        positive: str = "above",
    ) -> TaskSchema:
        """Derive a schema from one representative table using the module's column rule."""
        if categorical not in ("drop", "onehot"):
            raise ValueError(f"categorical must be 'drop' or 'onehot', not {categorical!r}")
        check_task(task, threshold, positive)
        check_unique_columns(table.columns, source)
        if target not in table.columns:
            raise DataError(
                f"target column is missing (columns are: {_preview(table.columns)})",
                source=source,
                column=target,
            )
        excluded = set(exclude)
        unknown = excluded - set(table.columns)
        if unknown:
            raise DataError(
                f"exclude names columns that do not exist: {sorted(unknown)}", source=source
            )
        features: list[str] = []
        identifiers: list[str] = []
        categories: dict[str, tuple[str, ...]] = {}
        for col in table.columns:
            if col == target:
                continue
            if col in excluded:
                identifiers.append(col)
                continue
            series = table[col]
            if _is_numeric(series):
                features.append(col)
                continue
            distinct = series.dropna().astype(str).unique()
            if len(distinct) <= max_categories and categorical == "onehot":
                cats = tuple(sorted(distinct))
                categories[col] = cats
                features.extend(f"{col}={c}" for c in cats)
            else:
                identifiers.append(col)
        if not features:
            raise DataError("no numeric feature columns found", source=source)
        return cls(
            target=target,
            features=tuple(features),
            unit=unit,
            identifiers=tuple(identifiers),
            categories=categories,
            task=task,
            threshold=None if threshold is None else float(threshold),
            positive=positive,
        )

    # -- encoding -----------------------------------------------------------------------------
    def encode(
        self, table: pd.DataFrame, source: str, *, require_target: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate ``table`` against the schema and return ``(X float64, y float64)``.

        Raises :class:`DataError` naming ``source`` and the column for: duplicate columns, a
        missing target or feature column, a non-numeric value in a numeric column, NaN/inf, an
        unknown category, or an empty table.
        """
        check_unique_columns(table.columns, source)
        if len(table) == 0:
            raise DataError("the table has no rows", source=source)
        y = None
        if require_target or self.target in table.columns:
            if self.target not in table.columns:
                raise DataError("target column is missing", source=source, column=self.target)
            y = (
                self.labels(table[self.target], source)
                if self.is_classification
                else _numeric_column(table[self.target], source, self.target)
            )
        needed = list(self.numeric_columns) + list(self.categories)
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise DataError(
                f"{len(missing)} feature column(s) required by the task schema are missing: "
                f"{_preview(missing)}",
                source=source,
                column=missing[0],
            )
        blocks: list[np.ndarray] = []
        for name in self.features:
            if self._is_onehot(name):
                col, _, cat = name.partition("=")
                blocks.append((table[col].astype(str).to_numpy() == cat).astype(np.float64))
            else:
                blocks.append(_numeric_column(table[name], source, name))
        for col, cats in self.categories.items():
            values = set(table[col].dropna().astype(str).unique())
            unseen = values - set(cats)
            if unseen:
                raise DataError(
                    f"categories {sorted(unseen)} are not in the task schema {list(cats)}",
                    source=source,
                    column=col,
                )
        X = np.stack(blocks, axis=1) if blocks else np.empty((len(table), 0))
        return X, y

    def labels(self, series: pd.Series, source: str) -> np.ndarray:
        """0/1 float64 class labels of a classification target column."""
        col = self.target
        if self.threshold is not None:
            values = _numeric_column(series, source, col)
            above = values > self.threshold
            return (above if self.positive == "above" else ~above).astype(np.float64)
        if pd.api.types.is_bool_dtype(series):
            return series.to_numpy(dtype=np.float64)
        if series.isna().any():
            row = int(np.flatnonzero(series.isna().to_numpy())[0])
            raise DataError(f"missing class label at data row {row + 1}", source=source, column=col)
        text = series.astype(str).str.strip().str.lower()
        mapped = text.map({"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0})
        if mapped.isna().any():
            row = int(np.flatnonzero(mapped.isna().to_numpy())[0])
            raise DataError(
                f"class label {series.iloc[row]!r} at data row {row + 1} is not 0/1 or "
                "true/false; give a threshold ([data] threshold) to turn a numeric column "
                "into classes",
                source=source,
                column=col,
            )
        return mapped.to_numpy(dtype=np.float64)

    def encode_org(
        self, table: pd.DataFrame, source: str, org: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Encode ``org``'s table: ``(X, y, mask)``. Without a declaration for ``org`` this is
        :meth:`encode` (every feature required, ``mask`` None). With one, the org's declared
        features are required (a missing one is an error naming it) and the others need not
        exist: their cells in ``X`` are 0.0 placeholders that nothing reads, ``mask`` False."""
        held = self.org_features.get(org)
        if held is None:
            X, y = self.encode(table, source)
            assert y is not None
            return X, y, None
        if any(self._is_onehot(f) for f in self.features):
            raise DataError("per-org feature sets support numeric features only", source=source)
        absent = [c for c in held if c not in table.columns]
        if absent:
            raise DataError(
                f"{len(absent)} column(s) {org} declared for this task are missing: "
                f"{_preview(absent)}",
                source=source,
                column=absent[0],
            )
        sub = TaskSchema(
            self.target,
            tuple(held),
            self.unit,
            self.identifiers,
            task=self.task,
            threshold=self.threshold,
            positive=self.positive,
        )
        Xh, y = sub.encode(table, source)
        assert y is not None
        mask = np.array([f in set(held) for f in self.features])
        X = np.zeros((len(table), self.n_features))
        X[:, mask] = Xh[:, [held.index(f) for f in self.features if f in set(held)]]
        return X, y, mask

    def missing_for(self, org: str) -> tuple[str, ...]:
        """The task features ``org`` does not hold (empty without a declaration)."""
        held = self.org_features.get(org)
        return () if held is None else tuple(f for f in self.features if f not in set(held))

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "target": self.target,
            "unit": self.unit,
            "features": list(self.features),
            "identifiers": list(self.identifiers),
            "categories": {k: list(v) for k, v in self.categories.items()},
        }
        if self.is_classification:
            d |= {"task": self.task, "threshold": self.threshold, "positive": self.positive}
        if self.org_features:  # only when declared, so other schemas keep their digest
            d["org_features"] = {k: list(v) for k, v in self.org_features.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TaskSchema:
        return cls(
            target=d["target"],
            unit=d.get("unit", "eV/atom"),
            features=tuple(d["features"]),
            identifiers=tuple(d.get("identifiers", ())),
            categories={k: tuple(v) for k, v in d.get("categories", {}).items()},
            task=d.get("task", "regression"),
            threshold=d.get("threshold"),
            positive=d.get("positive", "above"),
            org_features={k: tuple(v) for k, v in d.get("org_features", {}).items()},
        )

    def digest(self) -> str:
        """sha256 of the canonical JSON form: what a task spec commits to."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def check_task(task: str, threshold: float | None, positive: str) -> None:
    """Validate the classification settings (names the argument that is wrong)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if positive not in POSITIVE:
        raise ValueError(f"positive must be one of {', '.join(POSITIVE)}, got {positive!r}")
    if threshold is not None:
        if task != "classification":
            raise ValueError("threshold applies only to task = 'classification'")
        if isinstance(threshold, bool) or not np.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")


def check_unique_columns(columns: Sequence[str] | pd.Index, source: str) -> None:
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise DataError("duplicate column name", source=source, column=str(c))
        seen.add(c)


def _is_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    converted = pd.to_numeric(series, errors="coerce")
    return bool(converted.notna().sum() == series.notna().sum() and series.notna().any())


def _numeric_column(series: pd.Series, source: str, column: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=np.float64)
    else:
        converted = pd.to_numeric(series, errors="coerce")
        bad = converted.isna() & series.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"non-numeric value {series.iloc[row]!r} at data row {row + 1} "
                f"({int(bad.sum())} such rows)",
                source=source,
                column=column,
            )
        values = converted.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(
            f"{int((~finite).sum())} missing or infinite value(s), first at data row {row + 1} "
            f"({values[row]!r}); clean or impute them before joining the task",
            source=source,
            column=column,
        )
    return values


def _preview(items: Iterable[str], limit: int = 8) -> str:
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f", … (+{len(items) - limit})" if len(items) > limit else "")
