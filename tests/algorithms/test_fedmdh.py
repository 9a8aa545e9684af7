"""FedMDH: masks never leak a missing column, synthetic rows stay inside their org, and the
update is a plain flat float32 vector that every robust rule and the trust layer carry."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from matswarm.aggregation import RULES, make_rule
from matswarm.algorithms import make_algorithm
from matswarm.algorithms.fedmdh import _BIN_EDGES, label_deficit
from matswarm.data import synthetic
from matswarm.data.federated import FederatedDataset
from matswarm.data.heterogeneous import feature_partition
from matswarm.data.splits import apply_feature_subsets
from matswarm.models import ModelSpec
from matswarm.protocol import RoundHooks
from matswarm.runtime import build_engine

SMALL = dict(rounds=2, local_steps=3, lr=1e-2, batch_size=32, gen_warmup=0.0)
SPEC = ModelSpec("fedmdh", hidden=8)


def hetero(n_orgs=3, seed=1, overlap=0.5) -> FederatedDataset:
    base = synthetic.make_dataset(
        n_rows=80 * n_orgs, n_features=10, n_orgs=n_orgs, n_test=40, seed=seed
    )
    masks = feature_partition(10, n_orgs, overlap, seed)
    return FederatedDataset(
        base.schema, apply_feature_subsets(base.orgs, masks), base.test, "hetero", "nan"
    )


def first_layer_and_generator(params: np.ndarray, d: int):
    m = SPEC.build(d)
    m.set_flat(params)
    out = m.generator.out.weight.detach().numpy().copy()  # rows: d means, then d log-scales
    return m.body[0].weight.detach().numpy().copy(), out[:d], out[d:]


def test_masks_never_leak_a_missing_column():
    ds = hetero()
    algo = make_algorithm("fedmdh", **SMALL)
    org = ds.orgs[0]
    missing = np.flatnonzero(~org.feature_mask)
    assert missing.size
    run = build_engine(ds, SPEC, algo, make_rule("mean"), seed=0).run()
    # Garbage in org1's placeholder cells of the columns it does not hold changes nothing.
    X = org.X.copy()
    X[:, missing] = np.random.default_rng(9).normal(1e6, 1e6, size=(org.n, missing.size))
    poisoned = ds.with_orgs([replace(org, X=X), *ds.orgs[1:]])
    run2 = build_engine(poisoned, SPEC, algo, make_rule("mean"), seed=0).run()
    assert [r.global_hash for r in run.history] == [r.global_hash for r in run2.history]
    # Org1's local step never moves the weights that read, or generate, its missing columns;
    # the orgs that hold them do move them.
    d = ds.schema.n_features
    w0, mu0, ls0 = first_layer_and_generator(run.initial_global, d)
    node = build_engine(ds, SPEC, algo, make_rule("mean"), seed=0).participants[0]
    w1, mu1, ls1 = first_layer_and_generator(node.train(1, run.initial_global, None).params, d)
    assert np.array_equal(w1[:, missing], w0[:, missing])
    assert np.array_equal(mu1[missing], mu0[missing])
    assert np.array_equal(ls1[missing], ls0[missing])
    assert not np.array_equal(w1[:, org.feature_mask], w0[:, org.feature_mask])
    wg, _, _ = first_layer_and_generator(run.global_params, d)
    assert not np.array_equal(wg[:, missing], w0[:, missing])


def test_generator_adds_rows_only_inside_its_own_org():
    ds = hetero()
    algo = make_algorithm("fedmdh", **SMALL)
    engine = build_engine(ds, SPEC, algo, make_rule("mean"), seed=0)
    node = engine.participants[0]
    before = node.data.X.copy()
    model = SPEC.build(ds.schema.n_features, 0)
    rows = algo.synthesize(model, node.data.X, node.data.y, 500, np.random.default_rng(0))
    assert rows is not None
    xs, ys = rows
    held = ds.orgs[0].feature_mask
    assert torch.isnan(xs[:, ~held]).all() and torch.isfinite(xs[:, held]).all()
    # Labels only from ranges the org is short of.
    deficit = label_deficit(node.data.y)
    bins = np.clip(np.searchsorted(_BIN_EDGES, ys.numpy(), side="right") - 1, 0, len(deficit) - 1)
    assert (deficit[bins] > 0).all()
    record = engine.run_round(1)
    res = node.train(1, engine.run_state.initial_global, None)
    # Its table is untouched, its weight in the aggregate is its real row count, and what it
    # sends is the flat model delta only.
    assert np.array_equal(node.data.X, before, equal_nan=True) and node.data.n == ds.orgs[0].n
    assert res.n_samples == ds.orgs[0].n and res.gradient is None and res.ring_out is None
    assert (
        res.params.dtype == np.float32 and res.params.shape == engine.run_state.global_params.shape
    )
    assert set(record.participants) == set(ds.org_names)


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="shared_mask"):
        make_algorithm("fedmdh", align=False)
    with pytest.raises(ValueError, match="kd must be >= 0"):
        make_algorithm("fedmdh", kd=-1.0)
    with pytest.raises(ValueError, match="update must be 'delta'"):
        make_algorithm("fedmdh", update="gradient")
    ds = hetero()
    eng = build_engine(ds, ModelSpec("masked-mlp", hidden=8), make_algorithm("fedmdh", **SMALL),
                       make_rule("mean"), seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="needs the 'fedmdh' model"):
        eng.run_round(1)


class Capture(RoundHooks):
    def __init__(self):
        self.seen = []

    def publish(self, update, result):
        self.seen.append((update, result))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_update_passes_every_robust_rule_unchanged(rule):
    ds = hetero(n_orgs=7, overlap=0.6)
    hooks = Capture()
    algo = make_algorithm("fedmdh", **{**SMALL, "local_steps": 2})
    engine = build_engine(ds, SPEC, algo, make_rule(rule), seed=0, hooks=hooks)
    g = engine.run_state.global_params.copy()
    engine.run_round(1)
    for update, result in hooks.seen:
        assert update.vector.dtype == np.float32 and update.vector.shape == g.shape
        assert np.array_equal(update.vector, result.update_vector(g))
    new = engine.run_state.global_params
    assert np.isfinite(new).all() and not np.array_equal(new, g)


def test_trust_layer_carries_fedmdh_and_verifies(tmp_path):
    from tests.trustflow.helpers import trusted_task

    from matswarm.protocol.consortium import Consortium
    from matswarm.protocol.verify import first_failure_line, verify_task

    ds = hetero()
    algo = make_algorithm("fedmdh", **SMALL)
    plain = build_engine(ds, SPEC, algo, make_rule("mean"), seed=0).run()
    cons = Consortium.embedded(tmp_path, ds.org_names)
    try:
        eng, _, task_id = trusted_task(cons, ds, algo, spec=SPEC)
        eng.run()
        assert [r.global_hash for r in eng.run_state.history] == [
            r.global_hash for r in plain.history
        ]
        rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org2"])
        assert rep.ok, first_failure_line(rep)
        assert rep.rounds_verified == 2
    finally:
        cons.close()
