"""The participants' vote on a completed task's final model (voteFinalModel / setFinalModel)."""

from __future__ import annotations

import pytest

from matswarm.ledger import ContractRevert, TaskStatus

from .ledger_helpers import Consortium, h


def _completed(c: Consortium, n: int = 4) -> bytes:
    """A one-round task of orgs[:n] whose round finalised with hash h("g")."""
    task = c.task(n=n, rounds=1)
    c.ledger.send_batch(
        [
            c.as_(o).tx.commit_update(task, 1, h(f"u{i}"), f"bafy-{i}")
            for i, o in enumerate(c.orgs[:n])
        ]
    )
    c.ledger.send_batch([c.as_(o).tx.vote_global(task, 1, h("g")) for o in c.orgs[:n]])
    assert c.ledger.task_info(task).status is TaskStatus.COMPLETED
    return task


def test_votes_need_a_completed_task_its_final_hash_and_a_participant(consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=1)
    with pytest.raises(ContractRevert, match="task not completed"):
        c.as_(c.orgs[0]).vote_final_model(task, h("g"), True)
    c.ledger.send_batch(
        [c.as_(o).tx.commit_update(task, 1, h(f"u{i}"), "bafy") for i, o in enumerate(c.orgs[:4])]
    )
    c.ledger.send_batch([c.as_(o).tx.vote_global(task, 1, h("g")) for o in c.orgs[:4]])
    with pytest.raises(ContractRevert, match="not the final round's model"):
        c.as_(c.orgs[0]).vote_final_model(task, h("other"), True)
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).vote_final_model(task, h("g"), True)
    c.as_(c.orgs[0]).vote_final_model(task, h("g"), True)
    with pytest.raises(ContractRevert, match="already voted"):
        c.as_(c.orgs[0]).vote_final_model(task, h("g"), False)


def test_an_accepting_quorum_allows_archiving(consortium) -> None:
    c = consortium
    task = _completed(c)  # quorum 3 of 4
    c.as_(c.orgs[0]).vote_final_model(task, h("g"), False)
    c.as_(c.orgs[1]).vote_final_model(task, h("g"), True)
    res = c.as_(c.orgs[2]).vote_final_model(task, h("g"), True)
    assert res.event("FinalModelDecided") is None
    with pytest.raises(ContractRevert, match="final model not accepted"):
        c.ledger.set_final_model(task, h("g"), "bafy-model")
    res = c.as_(c.orgs[3]).vote_final_model(task, h("g"), True)
    decided = res.event("FinalModelDecided")
    assert decided is not None and decided.args["accepted"] is True
    votes = c.ledger.final_votes(task)
    assert (votes.accepts, votes.rejects, votes.decided) == (3, 1, True)
    assert votes.votes[c.orgs[0].address] is False and votes.model_hash == h("g")
    c.ledger.set_final_model(task, h("g"), "bafy-model")
    assert c.ledger.task_info(task).status is TaskStatus.ARCHIVED


def test_enough_rejections_reject_the_task_and_it_is_never_archived(consortium) -> None:
    c = consortium
    task = _completed(c)  # quorum 3 of 4: two rejections make 3 accepts impossible
    c.as_(c.orgs[0]).vote_final_model(task, h("g"), False)
    assert c.ledger.task_info(task).status is TaskStatus.COMPLETED
    res = c.as_(c.orgs[1]).vote_final_model(task, h("g"), False)
    decided = res.event("FinalModelDecided")
    assert decided is not None and decided.args["accepted"] is False
    assert c.ledger.task_info(task).status is TaskStatus.REJECTED
    assert c.ledger.final_votes(task).decided is False
    with pytest.raises(ContractRevert, match="final model rejected"):
        c.ledger.set_final_model(task, h("g"), "bafy-model")
    with pytest.raises(ContractRevert, match="task not completed"):
        c.as_(c.orgs[2]).vote_final_model(task, h("g"), True)
