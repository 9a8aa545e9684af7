"""Composition descriptors from chemical formulas: matminer's ``ElementProperty`` (Magpie preset)
on pymatgen ``Composition`` objects, with a local on-disk cache keyed by formula.

Each organisation featurises its own table locally; the featuriser's name, version and preset
(:class:`FeaturizerSpec`) go into the task spec, so every participant provably computes the same
descriptors (a node whose matminer/pymatgen differ from the task's refuses to join).

A formula is *invalid* when pymatgen cannot parse it, when it names a symbol that is not a
chemical element (pymatgen quietly accepts unknown symbols such as ``Xy`` as "dummy species"; we
do not), when it has no atoms, or when Magpie has no data for one of its elements (He, Ne, Ar,
heavy actinides, superheavy elements): matminer's NaN imputation is switched off, so a descriptor
is never silently replaced by a mean. Invalid formulas raise :class:`DataError` naming the file,
the data row and the value, or with ``skip_invalid=True`` are dropped and reported
(:class:`FeaturizeResult.invalid`, and a :class:`FeaturizeWarning` from :func:`featurize`).

matminer and pymatgen are the optional extra ``materials`` (``pip install -e ".[materials]"``).
The cache is an SQLite file per featuriser spec under ``$MATSWARM_FEATURE_CACHE`` (default
``$XDG_CACHE_HOME/matswarm/features`` or ``~/.cache/matswarm/features``); SQLite because several
processes of one organisation may featurise at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matswarm.data.errors import DataError

PRESETS = ("magpie",)
FEATURIZER_NAME = "matminer.ElementProperty"
INSTALL_HINT = 'install the materials extra: pip install -e ".[materials]"'

Progress = Callable[[int, int], None]
"""``progress(done, total)`` over the distinct formulas of a table."""


class FeaturizerUnavailable(DataError):
    """matminer/pymatgen are not installed (the ``materials`` extra)."""


class FeaturizeWarning(UserWarning):
    """Rows were dropped because their formulas are invalid (only with ``skip_invalid``)."""


@dataclass(frozen=True)
class FeaturizerSpec:
    """Which featuriser, at which version, with which preset: what a task spec pins."""

    name: str
    version: str
    preset: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturizerSpec:
        try:
            return cls(name=str(d["name"]), version=str(d["version"]), preset=str(d["preset"]))
        except KeyError as exc:
            raise DataError(f"featurizer spec lacks {exc.args[0]!r}: {d}") from None

    def cache_key(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return f"{self.preset}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True)
class InvalidFormula:
    """One row whose formula cannot be featurised: 1-based data row, the value, why."""

    row: int
    value: str
    reason: str

    def describe(self) -> str:
        return f"data row {self.row}: {self.value!r}: {self.reason}"


@dataclass(frozen=True)
class FeaturizeResult:
    table: pd.DataFrame
    spec: FeaturizerSpec
    feature_columns: tuple[str, ...]
    invalid: tuple[InvalidFormula, ...]
    computed: int
    cached: int


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise DataError(f"unknown featurizer preset {preset!r}; supported: {', '.join(PRESETS)}")


def _libraries():
    try:
        import matminer
        import pymatgen.core
        from matminer.featurizers.composition import ElementProperty
    except ImportError as exc:
        raise FeaturizerUnavailable(
            f"featurising formulas needs matminer and pymatgen ({exc.name} is missing); "
            + INSTALL_HINT
        ) from None
    return matminer, pymatgen.core, ElementProperty


def featurizer_spec(preset: str = "magpie") -> FeaturizerSpec:
    """This installation's featuriser (raises :class:`FeaturizerUnavailable` without it)."""
    _check_preset(preset)
    matminer, pmg, _ = _libraries()
    mm_version = getattr(matminer, "__version__", None) or _dist_version("matminer")
    return FeaturizerSpec(
        FEATURIZER_NAME, f"matminer {mm_version}; pymatgen {pmg.__version__}", preset
    )


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


@lru_cache(maxsize=4)
def _element_property(preset: str):
    _, _, ElementProperty = _libraries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ElementProperty.from_preset(preset, impute_nan=False)


def feature_columns(preset: str = "magpie") -> tuple[str, ...]:
    """The descriptor column names the preset adds, in order."""
    _check_preset(preset)
    return tuple(_element_property(preset).feature_labels())


def check_same_featurizer(required: dict[str, Any], source: str = "the task") -> FeaturizerSpec:
    """The local featuriser, if it is exactly the one ``required`` (a spec's ``featurizer``)."""
    want = FeaturizerSpec.from_dict(required)
    have = featurizer_spec(want.preset)
    if have != want:
        raise DataError(
            f"{source} requires featuriser {want.name} ({want.version}, preset {want.preset}) "
            f"but this installation has {have.name} ({have.version}); install those versions "
            "so every organisation computes the same descriptors"
        )
    return have


# -- the cache -------------------------------------------------------------------------------------
def cache_dir() -> Path:
    env = os.environ.get("MATSWARM_FEATURE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "matswarm" / "features"


class FeatureCache:
    """Descriptor vectors by formula string, for one featuriser spec (an SQLite file)."""

    def __init__(self, spec: FeaturizerSpec, n_features: int, directory: Path | None = None):
        self.n_features = n_features
        d = directory if directory is not None else cache_dir()
        self.path = d / f"{spec.cache_key()}.sqlite"
        self._db: sqlite3.Connection | None = None
        try:
            d.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS features (formula TEXT PRIMARY KEY, vec BLOB)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('spec', ?)", (json.dumps(spec.as_dict()),)
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            # A read-only home or a corrupt cache must not stop featurisation: compute instead.
            warnings.warn(
                f"feature cache {self.path} unusable ({exc}); computing without it",
                FeaturizeWarning,
                stacklevel=2,
            )
            self._db = None

    def get_many(self, formulas: Iterable[str]) -> dict[str, np.ndarray]:
        if self._db is None:
            return {}
        out: dict[str, np.ndarray] = {}
        keys = list(formulas)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT formula, vec FROM features WHERE formula IN ({marks})", chunk
            ).fetchall()
            for formula, blob in rows:
                vec = np.frombuffer(blob, dtype="<f8")
                if vec.shape == (self.n_features,):
                    out[formula] = vec
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        if self._db is None or not items:
            return
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO features VALUES (?, ?)",
                [(k, np.asarray(v, dtype="<f8").tobytes()) for k, v in items.items()],
            )
            self._db.commit()
        except sqlite3.Error as exc:
            warnings.warn(f"could not write {self.path}: {exc}", FeaturizeWarning, stacklevel=2)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# -- featurisation ---------------------------------------------------------------------------------
def _formula_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _featurize_one(formula: str, preset: str) -> np.ndarray | str:
    """The descriptor vector of one formula, or why it is invalid."""
    _, pmg, _ = _libraries()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = pmg.Composition(formula)
    except Exception as exc:  # pymatgen raises ValueError, KeyError, TypeError, ...
        msg = str(exc).strip("'\" ") or type(exc).__name__
        return f"not a chemical formula ({msg})"
    unknown = [str(e) for e in comp.elements if not isinstance(e, pmg.Element)]
    if unknown:
        symbols = ", ".join(repr(s.rstrip("0+-")) for s in unknown)
        return f"unknown element {symbols}"
    if comp.num_atoms <= 0:
        return "the formula has no atoms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vec = np.asarray(_element_property(preset).featurize(comp), dtype=np.float64)
    if not np.isfinite(vec).all():
        ep = _element_property(preset)
        lacking = [
            str(e)
            for e in comp.elements
            if not np.isfinite(np.asarray(ep.featurize(pmg.Composition(str(e))), float)).all()
        ]
        return (
            f"Magpie has no data for {', '.join(lacking) or 'one of its elements'} "
            f"({int((~np.isfinite(vec)).sum())} of {vec.size} descriptors undefined)"
        )
    return vec


def featurize_table(
    df: pd.DataFrame,
    *,
    formula_column: str = "formula",
    preset: str = "magpie",
    source: str = "<table>",
    skip_invalid: bool = False,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> FeaturizeResult:
    """:func:`featurize` with the details: which rows were invalid, how many formulas came
    from the cache, and a ``progress(done, total)`` callback over distinct formulas."""
    _check_preset(preset)
    spec = featurizer_spec(preset)
    columns = feature_columns(preset)
    if formula_column not in df.columns:
        fallback = "composition" if formula_column == "formula" else None
        if fallback and fallback in df.columns:
            formula_column = fallback
        else:
            shown = ", ".join(map(str, list(df.columns)[:8]))
            raise DataError(
                f"no formula column (columns are: {shown}); name the column that holds the "
                "formulas with --formula-column (config: [data] formula_column)",
                source=source,
                column=formula_column,
            )
    clash = [c for c in columns if c in df.columns]
    if clash:
        raise DataError(
            f"already has {len(clash)} {preset} descriptor column(s) such as {clash[0]!r}; "
            "featurise a table without them, or do not featurise it",
            source=source,
        )
    texts = [_formula_text(v) for v in df[formula_column].tolist()]
    distinct = list(dict.fromkeys(t for t in texts if t is not None))
    cache = FeatureCache(spec, len(columns)) if use_cache else None
    try:
        known = cache.get_many(distinct) if cache is not None else {}
        todo = [f for f in distinct if f not in known]
        results: dict[str, np.ndarray | str] = dict(known)
        fresh: dict[str, np.ndarray] = {}
        done = len(known)
        if progress:
            progress(done, len(distinct))
        for f in todo:
            out = _featurize_one(f, preset)
            results[f] = out
            if not isinstance(out, str):
                fresh[f] = out
            done += 1
            if progress and (done % 50 == 0 or done == len(distinct)):
                progress(done, len(distinct))
        if cache is not None:
            cache.put_many(fresh)
    finally:
        if cache is not None:
            cache.close()
    invalid: list[InvalidFormula] = []
    for i, t in enumerate(texts):
        if t is None:
            invalid.append(InvalidFormula(i + 1, "", "the formula is empty"))
        elif isinstance(results[t], str):
            invalid.append(InvalidFormula(i + 1, t, str(results[t])))
    if invalid and not skip_invalid:
        first = invalid[0]
        more = f" ({len(invalid)} invalid rows in all)" if len(invalid) > 1 else ""
        raise DataError(
            f"invalid formula {first.value!r} at data row {first.row}: {first.reason}{more}; "
            "fix it, or pass --skip-invalid (config: [data] skip_invalid = true) to drop "
            "such rows",
            source=source,
            column=formula_column,
        )
    bad_rows = {b.row - 1 for b in invalid}
    keep = [i for i in range(len(df)) if i not in bad_rows]
    matrix = (
        np.stack([results[texts[i]] for i in keep])  # type: ignore[misc]
        if keep
        else np.empty((0, len(columns)))
    )
    base = df.iloc[keep].reset_index(drop=True)
    desc = pd.DataFrame(matrix, columns=list(columns))
    table = pd.concat([base, desc], axis=1)
    return FeaturizeResult(
        table=table,
        spec=spec,
        feature_columns=columns,
        invalid=tuple(invalid),
        computed=len(todo),
        cached=len(known),
    )


def featurize(
    df: pd.DataFrame,
    *,
    formula_column: str = "formula",
    preset: str = "magpie",
    source: str = "<table>",
    skip_invalid: bool = False,
) -> pd.DataFrame:
    """``df`` with the preset's descriptor columns added (Magpie: 132 columns named like
    ``"MagpieData mean Number"``); the index is reset.

    Raises :class:`DataError` naming ``source``, the data row and the value for an invalid
    formula; with ``skip_invalid`` such rows are dropped and a :class:`FeaturizeWarning` lists
    them. If ``formula_column`` is the default ``"formula"`` and absent, ``"composition"`` is used.
    """
    res = featurize_table(
        df, formula_column=formula_column, preset=preset, source=source, skip_invalid=skip_invalid
    )
    if res.invalid:
        listed = "; ".join(b.describe() for b in res.invalid[:5])
        more = f"; … (+{len(res.invalid) - 5})" if len(res.invalid) > 5 else ""
        warnings.warn(
            f"{source}: skipped {len(res.invalid)} row(s) with invalid formulas: {listed}{more}",
            FeaturizeWarning,
            stacklevel=2,
        )
    return res.table


def task_featurizer(
    preset: str, formula_column: str = "formula", skip_invalid: bool = False
) -> dict[str, Any]:
    """What a task spec pins: this installation's featuriser and how the orgs apply it."""
    return featurizer_spec(preset).as_dict() | {
        "formula_column": formula_column,
        "skip_invalid": bool(skip_invalid),
    }


def prepare_table(table: pd.DataFrame, source: str, featurizer: dict[str, Any] | None):
    """An org's table as the task needs it: unchanged, or featurised locally with exactly the
    featuriser the task spec names (a different matminer/pymatgen version is refused)."""
    if not featurizer:
        return table
    spec = check_same_featurizer(featurizer, "the task")
    return featurize(
        table,
        formula_column=str(featurizer.get("formula_column", "formula")),
        preset=spec.preset,
        source=source,
        skip_invalid=bool(featurizer.get("skip_invalid", False)),
    )
