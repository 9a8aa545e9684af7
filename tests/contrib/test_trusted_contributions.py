"""Contributions and governance with the trust layer: scores and contributions anchored on the
ledger, the registration threshold's rejections recorded and agreed by verify, contribution
weights re-derived by verify, and a rejected final model never archived."""

from __future__ import annotations

import json
import os

import pytest
from tests.contrib.helpers import SPEC, dataset, trusted_task

from matswarm.contrib import ContributionSettings, final_model_votes, records
from matswarm.ledger import TaskStatus
from matswarm.protocol.consortium import finish_task
from matswarm.protocol.verify import first_failure_line, verify_task


def _finish(cons, spec, task_id, eng, validators, settings):
    run = eng.run_state
    votes, detail = final_model_votes(validators, run.initial_global, run.global_params, settings)
    return finish_task(
        cons, spec, task_id, eng, model=SPEC.build(12), votes=votes, vote_detail=detail
    )


@pytest.fixture()
def threshold_run(tmp_path):
    settings = ContributionSettings(threshold_ratio=1.0)
    cons, eng, spec, task_id, hooks, validators = trusted_task(dataset(0), tmp_path, settings)
    eng.run()
    cid, card = _finish(cons, spec, task_id, eng, validators, settings)
    yield cons, eng, task_id, hooks, cid, card
    cons.close()


def test_threshold_rejection_is_recorded_and_verify_agrees(threshold_run):
    cons, eng, task_id, hooks, cid, card = threshold_run
    flipper = cons.identities["org2"].evm_address
    assert hooks.rounds[2].rejected.keys() == {"org2"}  # round 1 starts from a random model
    rejections = cons.ledger.events(task_id, names=["UpdateRejected"])
    assert {(e.args["round"], e.args["org"].lower()) for e in rejections} == {(2, flipper.lower())}
    assert len(rejections) == 4 and all(
        e.args["reason"].startswith("threshold: val_mse") for e in rejections
    )
    assert eng.run_state.history[1].participants == ("org1", "org3", "org4")
    rep = verify_task(cons.ledger, cons.store, task_id)
    assert rep.ok, first_failure_line(rep)
    assert any("threshold rejects ['org2']" in f.what and f.round == 2 for f in rep.findings)
    # the card and the ledger hold the contributions, in the documented shape
    assert cid is not None and cons.ledger.task_info(task_id).status is TaskStatus.ARCHIVED
    docs = records.contributions(cons.ledger, cons.store, task_id)
    assert sorted(docs) == [0, 1, 2]
    assert set(docs[0]) == {"task", "round", "method", "metric", "values", "stderr", "names"}
    assert docs[0]["names"][flipper] == "org2" and docs[0]["metric"] == "val_mse"
    assert min(docs[0]["values"], key=docs[0]["values"].get) == flipper
    assert card["contributions"] == docs[0]
    assert [d["round"] for d in card["contributions_per_round"]] == [1, 2]
    scores = cons.ledger.reports(task_id, kind="scores")
    assert len(scores) == 8 and {r.round for r in scores} == {1, 2}


def test_a_tampered_scores_document_fails_verify_at_its_round(threshold_run):
    cons, _, task_id, _, _, _ = threshold_run
    rep = next(r for r in cons.ledger.reports(task_id, kind="scores", round=2))
    path = cons.store.path_of(rep.cid)
    os.chmod(path, 0o644)
    doc = json.loads(path.read_bytes())
    doc["scores"]["0x2"] = 0.0  # claim the flipper's update was perfect
    path.write_bytes(json.dumps(doc).encode())
    result = verify_task(cons.ledger, cons.store, task_id)
    f = result.first_failure
    assert f is not None and f.round == 2 and "contributions" in f.what, first_failure_line(result)


def test_contribution_weights_are_re_derived_by_verify(tmp_path):
    settings = ContributionSettings(weights="contribution", method="loo")
    cons, eng, _, task_id, hooks, _ = trusted_task(dataset(1), tmp_path, settings)
    try:
        eng.run()
        for rc in hooks.rounds.values():
            assert rc.weights is not None
            assert all(w == max(rc.values[o], 0.0) for o, w in rc.weights.items())
        assert any(w == 0.0 for rc in hooks.rounds.values() for w in rc.weights.values())
        rep = verify_task(cons.ledger, cons.store, task_id)
        assert rep.ok, first_failure_line(rep)
    finally:
        cons.close()


def test_a_rejected_final_model_is_not_archived(tmp_path):
    # an accept ratio of 0 asks for a perfect model: every org votes against it
    settings = ContributionSettings(final_accept_ratio=0.0)
    cons, eng, spec, task_id, _, validators = trusted_task(dataset(2), tmp_path, settings, rounds=1)
    try:
        eng.run()
        cid, card = _finish(cons, spec, task_id, eng, validators, settings)
        assert cid is None and card["final_model_vote"]["accepted"] is False
        info = cons.ledger.task_info(task_id)
        assert info.status is TaskStatus.REJECTED and info.final_model_cid is None
        assert cons.ledger.events(task_id, names=["FinalModelSet"]) == []
        votes = cons.ledger.final_votes(task_id)
        assert votes.decided is False and votes.accepts == 0
        rep = verify_task(cons.ledger, cons.store, task_id)
        assert rep.ok, first_failure_line(rep)
        assert not any("final model archive" in f.what for f in rep.findings)
    finally:
        cons.close()
