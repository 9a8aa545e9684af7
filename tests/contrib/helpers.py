"""Small tasks with contribution accounting: synthetic i.i.d. orgs, optionally one flipping its
labels (keys are generated at test time and never written)."""

from __future__ import annotations

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.attacks.data_attacks import LabelFlip, poison_dataset
from matswarm.contrib import ContributionSettings, attach_contributions, split_validation
from matswarm.data import synthetic
from matswarm.models import ModelSpec
from matswarm.protocol.consortium import Consortium, TrustSettings, trusted_engine
from matswarm.runtime import build_engine

SPEC = ModelSpec("mlp", hidden=8)


def dataset(seed: int, orgs: int = 4, flip: str | None = "org2"):
    ds = synthetic.make_dataset(
        n_rows=80 * orgs, n_features=12, n_orgs=orgs, n_test=40, seed=seed, label_shift=0.0
    )
    return poison_dataset(ds, {flip: LabelFlip()}) if flip else ds


def algorithm(rounds: int = 3):
    return make_algorithm("fedavg", rounds=rounds, local_steps=10, lr=1e-2, batch_size=32)


def plain_task(ds, settings: ContributionSettings, seed: int = 0, rounds: int = 3):
    """An in-process engine (no trust layer) with contribution accounting attached."""
    train, validators = split_validation(ds, SPEC, settings, seed)
    eng = build_engine(train, SPEC, algorithm(rounds), make_rule("mean"), seed)
    return eng, attach_contributions(eng, validators, settings), validators


def trusted_task(ds, workdir, settings: ContributionSettings, seed: int = 0, rounds: int = 2):
    """The same with the trust layer: keys, embedded ledger, store, every org verifying."""
    train, validators = split_validation(ds, SPEC, settings, seed)
    algo = algorithm(rounds)
    eng = build_engine(train, SPEC, algo, make_rule("mean"), seed)
    cons = Consortium.embedded(workdir, ds.org_names, durable=False)
    eng, spec, task_id = trusted_engine(
        eng,
        cons,
        model_spec=SPEC,
        algorithm=algo,
        rule=make_rule("mean"),
        seed=seed,
        schema=train.schema.to_dict(),
        settings=TrustSettings(encrypt_updates=False),
        contribution=settings.to_dict(),
    )
    hooks = attach_contributions(eng, validators, settings)
    return cons, eng, spec, task_id, hooks, validators
