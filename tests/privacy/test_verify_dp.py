"""``matswarm verify`` audits the signed ``dp-epsilon`` reports of a private task."""

from __future__ import annotations

import dataclasses
import os

from tests.privacy.test_dp import _trusted_private

from matswarm.algorithms import make_algorithm
from matswarm.privacy import PrivacyConfig
from matswarm.privacy.dp import REPORT_KIND
from matswarm.protocol.consortium import Consortium
from matswarm.protocol.verify import first_failure_line, report_lines, verify_task


def _run(tmp_path, ds, drop=None):
    """A trusted local-DP task of 2 rounds; ``drop = (org index, round)`` leaves that org's
    report of that round unanchored."""
    algo = make_algorithm("fedavg", rounds=2, local_steps=2, batch_size=16)
    cons = Consortium.embedded(tmp_path, ds.org_names, durable=False)
    priv = PrivacyConfig("local", 4.0, clip=0.5)
    eng, spec, task_id, plan = _trusted_private(cons, ds, algo, "mean", priv)
    if drop is not None:
        p = eng.participants[drop[0]]
        train = p.train

        def train_without_report(round_, start, ring):
            res = train(round_, start, ring)
            return dataclasses.replace(res, reports=()) if round_ == drop[1] else res

        p.train = train_without_report
    eng.run()
    return cons, spec, task_id, plan


def test_verify_audits_dp_reports_and_fails_on_a_tampered_one(small_synthetic, tmp_path):
    cons, spec, task_id, plan = _run(tmp_path, small_synthetic)
    try:
        first = cons.identities[spec.participants[0]]
        rep = verify_task(cons.ledger, cons.store, task_id, identity=first)
        assert rep.ok, first_failure_line(rep)
        line = next(x for x in report_lines(rep) if "differential privacy" in x)
        worst = max(plan.epsilon_after(2).values())
        assert line.startswith("PASS") and "6 signed dp-epsilon reports" in line
        assert f"epsilon spent {worst:.3f} of 4.0" in line
        # Tamper with org 2's round-1 report in the store: verify names the org and round.
        org = spec.participants[1]
        addr = cons.identities[org].public.evm_address
        r1 = next(
            r
            for r in cons.ledger.reports(task_id, kind=REPORT_KIND, round=1)
            if r.reporter == addr
        )
        path = cons.store.path_of(r1.cid)
        blob = path.read_bytes()
        os.chmod(path, 0o644)
        path.write_bytes(blob.replace(b'"round"', b'"Round"'))
        rep = verify_task(cons.ledger, cons.store, task_id, identity=first)
        assert not rep.ok
        msg = first_failure_line(rep)
        assert f"round 1 report of {org}" in msg and "differential privacy" in msg, msg
        path.unlink()  # ... or removed from it
        msg = first_failure_line(verify_task(cons.ledger, cons.store, task_id, identity=first))
        assert f"round 1 report of {org}" in msg, msg
    finally:
        cons.close()


def test_verify_fails_when_an_org_anchored_no_report(small_synthetic, tmp_path):
    cons, spec, task_id, _ = _run(tmp_path, small_synthetic, drop=(2, 2))
    try:
        first = cons.identities[spec.participants[0]]
        rep = verify_task(cons.ledger, cons.store, task_id, identity=first)
        assert not rep.ok
        msg = first_failure_line(rep)
        org = spec.participants[2]
        assert f"{org} anchored no dp-epsilon report for round(s) [2]" in msg, msg
        assert rep.rounds_verified == 2  # the rounds themselves re-derive
    finally:
        cons.close()

