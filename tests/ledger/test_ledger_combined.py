"""voteAndCommit: an org's vote on round r and its commitment for round r + 1 in one transaction."""

from __future__ import annotations

import pytest

from matswarm.ledger import ContractRevert, RoundPhase, TaskStatus

from .ledger_helpers import Consortium, h


def _commit_round_1(c: Consortium, task: bytes, n: int = 4) -> None:
    c.ledger.send_batch(
        [c.as_(o).tx.commit_update(task, 1, h(f"u1-{i}"), f"bafy-u1-{i}") for i, o in
         enumerate(c.orgs[:n])]
    )  # fmt: skip


def _combined(c: Consortium, task: bytes, rnd: int, orgs, vote: str = "g"):
    return [
        c.as_(o).tx.vote_and_commit(task, rnd, h(f"{vote}{rnd}"), h(f"u{rnd + 1}-{i}"), f"bafy{i}")
        for i, o in enumerate(orgs)
    ]


def test_commitments_sent_ahead_count_once_the_quorum_finalises(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=3)  # quorum 3
    _commit_round_1(c, task)
    first = c.as_(c.orgs[0]).vote_and_commit(task, 1, h("g1"), h("u2-0"), "bafy0")
    assert first.event("RoundFinalized") is None
    held = c.ledger.round_info(task, 2)
    assert held.phase is RoundPhase.NOT_OPENED and set(held.commitments) == {c.orgs[0].address}
    # commitUpdate cannot reach a round that is not open; only the combined path holds one
    with pytest.raises(ContractRevert, match="round not open"):
        c.as_(c.orgs[1]).commit_update(task, 2, h("x"), "bafy-x")
    with pytest.raises(ContractRevert, match="already voted"):
        c.as_(c.orgs[0]).vote_and_commit(task, 1, h("g1"), h("again"), "bafy")
    results = c.ledger.send_batch(_combined(c, task, 1, c.orgs[1:4]))
    # the third vote finalises round 1; the fourth is a late vote with an ordinary commitment
    assert [r.event("RoundFinalized") is not None for r in results] == [False, True, False]
    r1, r2 = c.ledger.round_info(task, 1), c.ledger.round_info(task, 2)
    assert r1.final_hash == h("g1") and len(r1.votes) == 4
    assert r2.phase is RoundPhase.VOTE and len(r2.commitments) == 4 and r2.missing == ()
    assert c.ledger.rounds(task)[2] == r2  # the event history says what storage says
    c.ledger.send_batch(_combined(c, task, 2, c.orgs[:4]))
    with pytest.raises(ContractRevert, match="no round after the last"):
        c.as_(c.orgs[0]).vote_and_commit(task, 3, h("g3"), h("u4"), "bafy")
    c.ledger.send_batch([c.as_(o).tx.vote_global(task, 3, h("g3")) for o in c.orgs[:3]])
    info = c.ledger.task_info(task)
    assert info.status is TaskStatus.COMPLETED
    assert c.ledger.round_info(task, 3).final_hash == h("g3")


def test_a_commitment_sent_ahead_opens_nothing_without_the_quorum(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=2, duration=60)
    _commit_round_1(c, task)
    # two combined transactions vote a minority hash: round 1 stays in its vote phase
    c.ledger.send_batch(_combined(c, task, 1, c.orgs[:2], vote="bad"))
    assert c.ledger.round_info(task, 1).phase is RoundPhase.VOTE
    assert len(c.ledger.round_info(task, 2).commitments) == 2
    # a rejection may name a round with commitments sent ahead
    c.as_(c.orgs[2]).record_rejection(task, 2, c.orgs[0].address, "bad update")
    with pytest.raises(ContractRevert, match="round not opened"):
        c.as_(c.orgs[2]).record_rejection(task, 3, c.orgs[0].address, "no such round")
    # the vote deadline passes: the task aborts, the held commitments never count
    c.ledger.chain.advance_time(120)
    c.as_(c.orgs[2]).close_round(task, 1)
    assert c.ledger.task_info(task).status is TaskStatus.ABORTED
    with pytest.raises(ContractRevert, match=r"task not active|voting not open|deadline"):
        c.as_(c.orgs[2]).vote_and_commit(task, 1, h("g1"), h("u2"), "bafy")


def test_a_non_participant_cannot_send_ahead(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=3, rounds=2)
    _commit_round_1(c, task, n=3)
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).vote_and_commit(task, 1, h("g1"), h("u2"), "bafy")
    with pytest.raises(ContractRevert, match="empty update hash"):
        c.as_(c.orgs[0]).vote_and_commit(task, 1, h("g1"), b"\0" * 32, "bafy")
    assert c.ledger.round_info(task, 1).votes == {}  # the reverted transaction left no vote
