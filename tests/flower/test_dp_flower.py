"""Differential privacy over Flower: each node wraps its participant with the in-process DP
path (:func:`matswarm.privacy.dp.private_org` on the same plan), draws its own noise, reports
its spend per round and, in a trusted task, anchors its signed ``dp-epsilon`` report itself."""

from __future__ import annotations

import dataclasses
import functools
import os

import pytest
from tests.flower.helpers import make_spec
from tests.flower.test_secagg import _reference, _trusted_run

from matswarm.ledger.anvil import ANVIL_ENV, find_anvil
from matswarm.privacy import PrivacyConfig, make_private
from matswarm.privacy.dp import REPORT_KIND
from matswarm.privacy.reports import audit_reports
from matswarm.runtime.flower.coordinator import OrgUnavailable
from matswarm.runtime.flower.localgrid import run_inprocess
from matswarm.runtime.flower.node import OrgService
from matswarm.trust import PASSPHRASE_ENV

SEED = 11  # reproducible noise (experiments and tests only): the nodes' own setting


def _private_spec(files, cfg: PrivacyConfig, task: str, **algorithm_params):
    """``spec`` with ``[privacy]`` (central: rate and noise pinned as a consortium does) and
    the round hashes and plan of the same task run in one process with noise seed ``SEED``."""
    spec = make_spec(files, rounds=2, task=task, algorithm_params=algorithm_params)
    attach = functools.partial(
        make_private, config=cfg, rule_name=spec.rule, model_name="mlp", noise_seed=SEED
    )
    expected, plan = _reference(files, spec, lambda e: attach(e))
    spec = dataclasses.replace(spec, privacy=cfg.resolved(plan).to_dict())
    return spec, expected, plan


def _epsilons(result) -> list[dict[str, float]]:
    return [r["epsilon_spent"] for r in result.rounds]


def test_local_dp_over_flower_equals_inprocess(org_files, tmp_path):
    cfg = PrivacyConfig("local", 4.0, clip=0.5)
    spec, expected, plan = _private_spec(org_files, cfg, "dp-local")
    services = {n: OrgService(n, p, noise_seed=SEED) for n, p in org_files.items()}
    result, _ = run_inprocess(spec, services, tmp_path)
    assert result.hashes == expected  # the same DP-SGD steps, noise drawn at the nodes
    assert _epsilons(result) == [plan.epsilon_after(t) for t in (1, 2)]
    assert 0 < max(plan.epsilon_after(2).values()) <= 4.0
    # Without a seed every node draws from its OS entropy: another model, the same spend.
    services = {n: OrgService(n, p) for n, p in org_files.items()}
    other, _ = run_inprocess(spec, services, tmp_path / "entropy")
    assert other.hashes[0] != expected[0]
    assert _epsilons(other) == _epsilons(result)


def test_exhausted_budget_is_refused_by_the_node_at_join(org_files, tmp_path):
    cfg = {"mode": "local", "epsilon": 1.0, "noise_multiplier": 0.3}
    spec = make_spec(org_files, rounds=2, task="dp-exhausted", privacy=cfg)
    services = {n: OrgService(n, p) for n, p in org_files.items()}
    with pytest.raises(OrgUnavailable, match=r"\[privacy\] epsilon = 1.0.*exhausted at round 1"):
        run_inprocess(spec, services, tmp_path, join_timeout_s=20)


class _UnionStore:
    """The orgs' own stores read as one (what an auditor gathers from them)."""

    def __init__(self, stores):
        self.stores = stores

    def get(self, cid):
        for s in self.stores:
            if s.has(cid):
                return s.get(cid)
        raise KeyError(cid)


@pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV), reason="anvil not found"
)
def test_trusted_central_dp_over_flower_anchors_each_orgs_reports(
    org_files, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    cfg = PrivacyConfig("central", 4.0, clip=0.5)
    spec, expected, plan = _private_spec(
        org_files, cfg, "dp-central", update="gradient", server_lr=0.1
    )
    seeded = {n: functools.partial(OrgService, noise_seed=SEED) for n in org_files}
    with _trusted_run(org_files, spec, tmp_path, seeded) as run:
        result, ledger, ids, services, task_id = run
        assert result.hashes == expected
        assert _epsilons(result) == [plan.epsilon_after(t) for t in (1, 2)]
        for t in (1, 2):  # one dp-epsilon report per org and round, sent by that org
            reporters = {r.reporter for r in ledger.reports(task_id, kind=REPORT_KIND, round=t)}
            assert reporters == {ids[n].public.evm_address for n in org_files}
        store = _UnionStore([s.trust().store for s in services.values()])
        directory = {n: ids[n].public for n in org_files}
        audited, problems = audit_reports(ledger, store, task_id, spec, directory)
        assert problems == []
        assert sorted((a.org, a.round) for a in audited) == [
            (n, t) for n in sorted(org_files) for t in (1, 2)
        ]
        for a in audited:
            assert a.epsilon_spent == plan.mechanisms[a.org].epsilon_after(a.round)
