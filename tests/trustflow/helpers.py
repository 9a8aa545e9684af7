"""Small trusted tasks on the embedded chain, shared by the trust-flow and ledger tests (keys are
generated at test time and never written)."""

from __future__ import annotations

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.models import ModelSpec
from matswarm.protocol.consortium import Consortium, TrustSettings, finish_task, trusted_engine
from matswarm.runtime import build_engine

SPEC = ModelSpec("mlp", hidden=8)


def trusted_task(cons, ds, algo, *, rule="mean", seed=0, settings=None, spec=SPEC):
    """An in-process engine for ``ds`` with the trust layer of ``cons`` attached (task created)."""
    eng = build_engine(ds, spec, algo, make_rule(rule), seed)
    return trusted_engine(
        eng,
        cons,
        model_spec=spec,
        algorithm=algo,
        rule=make_rule(rule),
        seed=seed,
        schema=ds.schema.to_dict(),
        settings=settings or TrustSettings(),
    )


def run_trusted(
    ds,
    workdir,
    *,
    algorithm="matswarm",
    rounds=3,
    rule="mean",
    encrypt=True,
    enclave=False,
    seed=0,
    finish=True,
    verification="every-org",
    audit_rate=None,
):
    # MatSwarm with the paper's alignment weight, so ring intermediates really travel (sealed,
    # encrypted to the successor, verified on arrival).
    extra = {"gamma": 0.5} if algorithm == "matswarm" else {}
    algo = make_algorithm(algorithm, rounds=rounds, local_steps=4, lr=1e-2, batch_size=32, **extra)
    cons = Consortium.embedded(workdir, ds.org_names)
    settings = TrustSettings(
        encrypt_updates=encrypt,
        enclave=enclave,
        verification=verification,
        audit_rate=audit_rate,
    )
    eng, spec, task_id = trusted_task(cons, ds, algo, rule=rule, seed=seed, settings=settings)
    eng.run()
    if finish:
        finish_task(cons, spec, task_id, eng, model=SPEC.build(ds.schema.n_features))
    return cons, eng, spec, task_id
