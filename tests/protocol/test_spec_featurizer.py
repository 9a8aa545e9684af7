"""The featuriser and the classification settings are part of what a task spec hashes; a task
without them hashes exactly as before they existed."""

from __future__ import annotations

import json

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.models import ModelSpec
from matswarm.protocol.spec import TaskSpec

SCHEMA = {"target": "e_form", "unit": "eV/atom", "features": ["x0", "x1"], "identifiers": []}
MAGPIE = {
    "name": "matminer.ElementProperty",
    "version": "matminer 0.10.1; pymatgen 2026.10.16",
    "preset": "magpie",
    "formula_column": "formula",
    "skip_invalid": False,
}


def _spec(schema=SCHEMA, **kw) -> TaskSpec:
    return TaskSpec.for_run(
        "t", ["a", "b"], ModelSpec(), make_algorithm("fedavg", rounds=2), make_rule("mean"), 0,
        schema, "00" * 32, **kw,
    )  # fmt: skip


def test_featurizer_is_hashed_and_round_trips():
    plain, featurised = _spec(), _spec(featurizer=MAGPIE)
    assert "featurizer" not in json.loads(plain.to_json())  # old specs keep their hash
    assert json.loads(featurised.to_json())["featurizer"] == MAGPIE
    assert plain.digest() != featurised.digest()
    other = _spec(featurizer=MAGPIE | {"version": "matminer 0.9.0; pymatgen 2023.1.1"})
    assert other.digest() != featurised.digest()
    assert TaskSpec.from_json(featurised.to_json()) == featurised
    assert TaskSpec.from_json(plain.to_json()) == plain


def test_classification_settings_are_hashed():
    cls = SCHEMA | {"task": "classification", "threshold": 0.0, "positive": "above"}
    below = cls | {"positive": "below"}
    assert len({_spec().digest(), _spec(cls).digest(), _spec(below).digest()}) == 3
