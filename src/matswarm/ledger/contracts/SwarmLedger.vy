# pragma version 0.4.3
# pragma evm-version cancun
# pragma optimize gas
# pragma experimental-codegen
"""
@title SwarmLedger
@license Apache-2.0
@notice matswarm's on-chain record of a swarm-learning consortium.

  * Org registry with governed admission: the founding orgs named at deployment
    admit a candidate directly; otherwise a proposal needs the votes of
    ceil(2m/3) of the m admitted members. Every state-changing function
    reverts for an address that is not admitted.
  * Tasks ("sharing" transactions): issuer, participants, spec hash, code
    hashes of the training and aggregation code, quorum >= ceil(2n/3), number
    of rounds and a round duration in seconds. Tasks are retrievable by spec
    digest ("retrieval").
  * Per round: one commitment (update hash + content id) per participant, then
    one global-hash vote per participant. The update hash is kept in storage
    (it enforces once-per-round and binds the commitment to its sender); the
    content id travels in the UpdateCommitted event only, which every node
    keeps in the block's receipts: the contract never reads it. The vote that brings a hash to the
    quorum finalises the round. voteAndCommit carries an org's vote on round r and its
    commitment for round r + 1 in one transaction (one signed transaction per org and
    round); a commitment sent ahead counts once the quorum finalises r. Because quorum >= ceil(2n/3) > n/2 and each
    participant votes once, at most one hash per round can ever reach quorum.
  * Deadlines: after a commit window anyone admitted may close the round; it
    proceeds to voting with the orgs that committed (if still >= quorum) and
    records who was missing, otherwise the task aborts. A vote window that ends
    without a quorum also aborts the task (liveness needs quorum honest orgs).
  * Rejections of attested updates are logged per (task, round, org).
  * The final model's hash and content id ("uploading") are set once by the
    issuer after the last round is final, and only once a quorum of participants
    voted to accept that model (voteFinalModel); enough rejections that no
    accepting quorum can form any more mark the task REJECTED, and it is never
    archived.
"""

MAX_FOUNDERS: constant(uint256) = 16
MAX_PARTICIPANTS: constant(uint256) = 32
MAX_META: constant(uint256) = 256
MAX_CID: constant(uint256) = 128
MAX_REASON: constant(uint256) = 256
MAX_KIND: constant(uint256) = 32

# task status
STATUS_ACTIVE: constant(uint8) = 1
STATUS_COMPLETED: constant(uint8) = 2
STATUS_ARCHIVED: constant(uint8) = 3
STATUS_ABORTED: constant(uint8) = 4
STATUS_REJECTED: constant(uint8) = 5

# round phase
PHASE_COMMIT: constant(uint8) = 1
PHASE_VOTE: constant(uint8) = 2
PHASE_FINAL: constant(uint8) = 3
PHASE_FAILED: constant(uint8) = 4


struct Org:
    ed25519: bytes32
    x25519: bytes32
    meta: String[MAX_META]
    admitted: bool
    founder: bool
    admittedAtBlock: uint256


struct Proposal:
    ed25519: bytes32
    x25519: bytes32
    meta: String[MAX_META]
    proposer: address
    votes: uint256
    open: bool


struct Task:
    issuer: address
    specHash: bytes32
    trainCodeHash: bytes32
    aggCodeHash: bytes32
    quorum: uint256
    rounds: uint256
    roundDuration: uint256
    createdAt: uint256
    currentRound: uint256
    status: uint8
    finalModelHash: bytes32
    finalModelCid: String[MAX_CID]


struct Round:
    phase: uint8
    deadline: uint256
    commits: uint256
    votes: uint256
    finalHash: bytes32
    missing: DynArray[address, MAX_PARTICIPANTS]


event OrgAdmitted:
    org: indexed(address)
    admittedBy: indexed(address)
    ed25519: bytes32
    x25519: bytes32
    meta: String[MAX_META]
    members: uint256

event OrgUpdated:
    org: indexed(address)
    ed25519: bytes32
    x25519: bytes32
    meta: String[MAX_META]

event AdmissionProposed:
    candidate: indexed(address)
    proposer: indexed(address)
    ed25519: bytes32
    x25519: bytes32
    meta: String[MAX_META]

event AdmissionWithdrawn:
    candidate: indexed(address)
    by: indexed(address)

event AdmissionVoted:
    candidate: indexed(address)
    voter: indexed(address)
    votes: uint256
    needed: uint256

event TaskCreated:
    taskId: indexed(bytes32)
    issuer: indexed(address)
    specHash: indexed(bytes32)
    participants: DynArray[address, MAX_PARTICIPANTS]
    quorum: uint256
    rounds: uint256
    roundDuration: uint256
    trainCodeHash: bytes32
    aggCodeHash: bytes32

event RoundOpened:
    taskId: indexed(bytes32)
    round: uint256
    deadline: uint256

event UpdateCommitted:
    taskId: indexed(bytes32)
    org: indexed(address)
    round: uint256
    updateHash: bytes32
    cid: String[MAX_CID]

event CommitsClosed:
    taskId: indexed(bytes32)
    round: uint256
    committed: uint256
    missing: DynArray[address, MAX_PARTICIPANTS]
    voteDeadline: uint256

event GlobalVoted:
    taskId: indexed(bytes32)
    org: indexed(address)
    round: uint256
    globalHash: bytes32
    count: uint256

event RoundFinalized:
    taskId: indexed(bytes32)
    round: uint256
    globalHash: bytes32
    votes: uint256

event UpdateRejected:
    taskId: indexed(bytes32)
    reporter: indexed(address)
    org: indexed(address)
    round: uint256
    reason: String[MAX_REASON]

event TaskCompleted:
    taskId: indexed(bytes32)
    lastRound: uint256
    globalHash: bytes32

event TaskAborted:
    taskId: indexed(bytes32)
    round: uint256
    reason: String[64]

event FinalModelSet:
    taskId: indexed(bytes32)
    modelHash: bytes32
    cid: String[MAX_CID]

event FinalModelVoted:
    taskId: indexed(bytes32)
    org: indexed(address)
    modelHash: bytes32
    accept: bool
    accepts: uint256
    rejects: uint256

event FinalModelDecided:
    taskId: indexed(bytes32)
    modelHash: bytes32
    accepted: bool
    accepts: uint256
    rejects: uint256

event ReportRecorded:
    taskId: indexed(bytes32)
    reporter: indexed(address)
    kind: String[MAX_KIND]
    round: uint256
    digest: bytes32
    cid: String[MAX_CID]


orgs: HashMap[address, Org]
memberCount: public(uint256)
memberAt: public(HashMap[uint256, address])
proposals: HashMap[address, Proposal]
# votes are per proposal, so a withdrawn proposal's votes never count for a new one
proposalSerial: HashMap[address, uint256]
admissionVoted: HashMap[address, HashMap[uint256, HashMap[address, bool]]]

tasks: HashMap[bytes32, Task]
taskCount: public(uint256)
taskAt: public(HashMap[uint256, bytes32])
taskNonce: HashMap[address, uint256]
specTaskCount: public(HashMap[bytes32, uint256])
specTaskAt: public(HashMap[bytes32, HashMap[uint256, bytes32]])
participants: HashMap[bytes32, DynArray[address, MAX_PARTICIPANTS]]
isParticipant: HashMap[bytes32, HashMap[address, bool]]
rounds: HashMap[bytes32, HashMap[uint256, Round]]
# update hash per (task, round, org); empty: no commitment
commitments: HashMap[bytes32, HashMap[uint256, HashMap[address, bytes32]]]
votes: HashMap[bytes32, HashMap[uint256, HashMap[address, bytes32]]]
hashVotes: HashMap[bytes32, HashMap[uint256, HashMap[bytes32, uint256]]]
rejectionCount: public(HashMap[bytes32, uint256])
# final-model votes per (task, org): 0 none, 1 accept, 2 reject
finalVotes: HashMap[bytes32, HashMap[address, uint8]]
finalAccepts: public(HashMap[bytes32, uint256])
finalRejects: public(HashMap[bytes32, uint256])


@deploy
def __init__(founders: DynArray[address, MAX_FOUNDERS]):
    assert len(founders) > 0, "no founders"
    for f: address in founders:
        assert f != empty(address), "zero founder"
        assert not self.orgs[f].admitted, "duplicate founder"
        self._admit(f, empty(bytes32), empty(bytes32), "", empty(address))
        self.orgs[f].founder = True


@internal
def _admit(org: address, ed: bytes32, xk: bytes32, meta: String[MAX_META], by: address):
    self.orgs[org] = Org(
        ed25519=ed, x25519=xk, meta=meta, admitted=True, founder=False,
        admittedAtBlock=block.number,
    )
    self.memberAt[self.memberCount] = org
    self.memberCount += 1
    log OrgAdmitted(org=org, admittedBy=by, ed25519=ed, x25519=xk, meta=meta, members=self.memberCount)


@internal
@view
def _onlyMember():
    assert self.orgs[msg.sender].admitted, "sender not admitted"


@internal
@pure
def _twoThirds(n: uint256) -> uint256:
    # ceil(2n/3) without floating point
    return (2 * n + 2) // 3


# ---------------------------------------------------------------- registry

@external
def updateOrg(ed25519: bytes32, x25519: bytes32, meta: String[MAX_META]):
    """@notice An admitted org sets or rotates its own public keys and metadata."""
    self._onlyMember()
    self.orgs[msg.sender].ed25519 = ed25519
    self.orgs[msg.sender].x25519 = x25519
    self.orgs[msg.sender].meta = meta
    log OrgUpdated(org=msg.sender, ed25519=ed25519, x25519=x25519, meta=meta)


@external
def proposeAdmission(candidate: address, ed25519: bytes32, x25519: bytes32, meta: String[MAX_META]):
    """
    @notice Propose a candidate with its public keys. A founder's proposal
            admits at once; a member's proposal counts as its first vote.
    """
    self._onlyMember()
    assert candidate != empty(address), "zero candidate"
    assert not self.orgs[candidate].admitted, "already admitted"
    assert not self.proposals[candidate].open, "proposal already open"
    if self.orgs[msg.sender].founder:
        self._admit(candidate, ed25519, x25519, meta, msg.sender)
        return
    self.proposals[candidate] = Proposal(
        ed25519=ed25519, x25519=x25519, meta=meta, proposer=msg.sender, votes=0, open=True
    )
    self.proposalSerial[candidate] += 1
    log AdmissionProposed(candidate=candidate, proposer=msg.sender, ed25519=ed25519, x25519=x25519, meta=meta)
    self._voteAdmission(candidate)


@external
def voteAdmission(candidate: address):
    """@notice One approval per member; ceil(2m/3) approvals admit the candidate."""
    self._onlyMember()
    assert self.proposals[candidate].open, "no open proposal"
    self._voteAdmission(candidate)


@external
def withdrawAdmission(candidate: address):
    """@notice The proposer or a founder withdraws an open proposal (e.g. wrong keys)."""
    self._onlyMember()
    assert self.proposals[candidate].open, "no open proposal"
    assert msg.sender == self.proposals[candidate].proposer or self.orgs[msg.sender].founder, "not the proposer"
    self.proposals[candidate].open = False
    log AdmissionWithdrawn(candidate=candidate, by=msg.sender)


@internal
def _voteAdmission(candidate: address):
    serial: uint256 = self.proposalSerial[candidate]
    assert not self.admissionVoted[candidate][serial][msg.sender], "already voted"
    self.admissionVoted[candidate][serial][msg.sender] = True
    n: uint256 = self.proposals[candidate].votes + 1
    self.proposals[candidate].votes = n
    needed: uint256 = self._twoThirds(self.memberCount)
    log AdmissionVoted(candidate=candidate, voter=msg.sender, votes=n, needed=needed)
    if n >= needed:
        p: Proposal = self.proposals[candidate]
        self.proposals[candidate].open = False
        self._admit(candidate, p.ed25519, p.x25519, p.meta, p.proposer)


@external
@view
def isAdmitted(org: address) -> bool:
    return self.orgs[org].admitted


@external
@view
def getOrg(org: address) -> Org:
    return self.orgs[org]


@external
@view
def getProposal(candidate: address) -> Proposal:
    return self.proposals[candidate]


# ------------------------------------------------------------------- tasks

@external
def createTask(
    participants: DynArray[address, MAX_PARTICIPANTS],
    quorum: uint256,
    specHash: bytes32,
    trainCodeHash: bytes32,
    aggCodeHash: bytes32,
    rounds: uint256,
    roundDuration: uint256,
) -> bytes32:
    """@notice A "sharing" transaction. The task id is derived, so it cannot be squatted."""
    self._onlyMember()
    n: uint256 = len(participants)
    assert n > 0, "no participants"
    assert quorum <= n, "quorum above participants"
    assert quorum * 3 >= 2 * n and quorum > 0, "quorum below 2/3"
    assert rounds > 0, "zero rounds"
    assert roundDuration > 0, "zero round duration"
    nonce: uint256 = self.taskNonce[msg.sender]
    self.taskNonce[msg.sender] = nonce + 1
    taskId: bytes32 = keccak256(abi_encode(chain.id, self, msg.sender, nonce))
    assert self.tasks[taskId].status == 0, "task exists"
    for p: address in participants:
        assert self.orgs[p].admitted, "participant not admitted"
        assert not self.isParticipant[taskId][p], "duplicate participant"
        self.isParticipant[taskId][p] = True
    self.participants[taskId] = participants
    self.tasks[taskId] = Task(
        issuer=msg.sender, specHash=specHash, trainCodeHash=trainCodeHash,
        aggCodeHash=aggCodeHash, quorum=quorum, rounds=rounds,
        roundDuration=roundDuration, createdAt=block.timestamp, currentRound=1,
        status=STATUS_ACTIVE, finalModelHash=empty(bytes32), finalModelCid="",
    )
    self.taskAt[self.taskCount] = taskId
    self.taskCount += 1
    k: uint256 = self.specTaskCount[specHash]
    self.specTaskAt[specHash][k] = taskId
    self.specTaskCount[specHash] = k + 1
    log TaskCreated(
        taskId=taskId, issuer=msg.sender, specHash=specHash, participants=participants,
        quorum=quorum, rounds=rounds, roundDuration=roundDuration,
        trainCodeHash=trainCodeHash, aggCodeHash=aggCodeHash,
    )
    # Rounds are numbered 1..rounds, as everywhere else in matswarm.
    self._openRound(taskId, 1, roundDuration)
    return taskId


@internal
def _openRound(taskId: bytes32, r: uint256, duration: uint256):
    deadline: uint256 = block.timestamp + duration
    self.rounds[taskId][r].phase = PHASE_COMMIT
    self.rounds[taskId][r].deadline = deadline
    self.tasks[taskId].currentRound = r
    log RoundOpened(taskId=taskId, round=r, deadline=deadline)
    # Commitments sent ahead with the previous round's votes (voteAndCommit) count at once.
    c: uint256 = self.rounds[taskId][r].commits
    if c > 0 and c == len(self.participants[taskId]):
        self._closeCommits(taskId, r, c)


@internal
@view
def _onlyParticipant(taskId: bytes32):
    # A participant was admitted when the task was created (admission is never revoked)
    # and the task exists, so one lookup decides; the other checks only pick the reason.
    if not self.isParticipant[taskId][msg.sender]:
        self._onlyMember()
        assert self.tasks[taskId].status != 0, "unknown task"
        raise "not a participant"


@internal
@view
def _requireCurrent(taskId: bytes32, r: uint256):
    assert self.tasks[taskId].status == STATUS_ACTIVE, "task not active"
    assert r == self.tasks[taskId].currentRound, "round not open"


@internal
def _closeCommits(taskId: bytes32, r: uint256, committed: uint256):
    missing: DynArray[address, MAX_PARTICIPANTS] = []
    if committed < len(self.participants[taskId]):
        for p: address in self.participants[taskId]:
            if self.commitments[taskId][r][p] == empty(bytes32):
                missing.append(p)
        self.rounds[taskId][r].missing = missing
    deadline: uint256 = block.timestamp + self.tasks[taskId].roundDuration
    self.rounds[taskId][r].phase = PHASE_VOTE
    self.rounds[taskId][r].deadline = deadline
    log CommitsClosed(taskId=taskId, round=r, committed=committed, missing=missing, voteDeadline=deadline)


@internal
def _abort(taskId: bytes32, r: uint256, reason: String[64]):
    self.tasks[taskId].status = STATUS_ABORTED
    self.rounds[taskId][r].phase = PHASE_FAILED
    log TaskAborted(taskId=taskId, round=r, reason=reason)


@external
def commitUpdate(taskId: bytes32, round: uint256, updateHash: bytes32, cid: String[MAX_CID]):
    """@notice Bind the sender's update (hash + content id) to (task, round), once."""
    self._onlyParticipant(taskId)
    self._requireCurrent(taskId, round)
    self._commit(taskId, round, updateHash, cid)


@internal
def _commit(taskId: bytes32, round: uint256, updateHash: bytes32, cid: String[MAX_CID]):
    # round is the current round (open for commitments) or, sent ahead, the one after it
    # while the current one is being voted on (see voteAndCommit).
    assert self.rounds[taskId][round].phase == PHASE_COMMIT, "commit phase over"
    assert block.timestamp <= self.rounds[taskId][round].deadline, "commit deadline passed"
    self._store_commit(taskId, round, updateHash, cid)
    c: uint256 = self.rounds[taskId][round].commits
    if c == len(self.participants[taskId]):
        self._closeCommits(taskId, round, c)


@internal
def _store_commit(taskId: bytes32, round: uint256, updateHash: bytes32, cid: String[MAX_CID]):
    assert updateHash != empty(bytes32), "empty update hash"
    assert self.commitments[taskId][round][msg.sender] == empty(bytes32), "already committed"
    self.commitments[taskId][round][msg.sender] = updateHash
    self.rounds[taskId][round].commits += 1
    log UpdateCommitted(taskId=taskId, org=msg.sender, round=round, updateHash=updateHash, cid=cid)


@external
def voteGlobal(taskId: bytes32, round: uint256, globalHash: bytes32):
    """
    @notice One vote per participant per round. The vote that brings a hash to
            quorum finalises the round. Votes on an already final round are
            recorded (who agreed) but change nothing.
    """
    self._onlyParticipant(taskId)
    self._vote(taskId, round, globalHash)


@internal
def _vote(taskId: bytes32, round: uint256, globalHash: bytes32):
    assert globalHash != empty(bytes32), "empty global hash"
    phase: uint8 = self.rounds[taskId][round].phase
    assert phase == PHASE_VOTE or phase == PHASE_FINAL, "voting not open"
    if phase == PHASE_VOTE:
        assert block.timestamp <= self.rounds[taskId][round].deadline, "vote deadline passed"
    assert self.votes[taskId][round][msg.sender] == empty(bytes32), "already voted"
    self.votes[taskId][round][msg.sender] = globalHash
    count: uint256 = self.hashVotes[taskId][round][globalHash] + 1
    self.hashVotes[taskId][round][globalHash] = count
    self.rounds[taskId][round].votes += 1
    log GlobalVoted(taskId=taskId, org=msg.sender, round=round, globalHash=globalHash, count=count)
    if phase == PHASE_VOTE and count >= self.tasks[taskId].quorum:
        self.rounds[taskId][round].phase = PHASE_FINAL
        self.rounds[taskId][round].finalHash = globalHash
        log RoundFinalized(taskId=taskId, round=round, globalHash=globalHash, votes=count)
        if round == self.tasks[taskId].rounds:
            self.tasks[taskId].status = STATUS_COMPLETED
            log TaskCompleted(taskId=taskId, lastRound=round, globalHash=globalHash)
        else:
            self._openRound(taskId, round + 1, self.tasks[taskId].roundDuration)


@external
def voteAndCommit(
    taskId: bytes32, round: uint256, globalHash: bytes32, nextUpdateHash: bytes32,
    nextCid: String[MAX_CID],
):
    """
    @notice One transaction per org and round: the vote on round's global hash (as
            voteGlobal) and the org's commitment for round + 1 (as commitUpdate), trained
            on the model it votes for. If round is still being voted on, the commitment is
            held for round + 1 and counts when the quorum finalises round (which opens
            round + 1); if round is final already, it is an ordinary commitment. Either way
            it is bound to the sender and accepted once, as commitUpdate's. The last round
            has no next commitment: vote it with voteGlobal.
    """
    self._onlyParticipant(taskId)
    assert round < self.tasks[taskId].rounds, "no round after the last"
    self._vote(taskId, round, globalHash)
    assert self.tasks[taskId].status == STATUS_ACTIVE, "task not active"
    current: uint256 = self.tasks[taskId].currentRound
    if current == round + 1:
        self._commit(taskId, round + 1, nextUpdateHash, nextCid)
    else:
        # The vote did not finalise round: hold the commitment until the quorum does.
        assert current == round and self.rounds[taskId][round].phase == PHASE_VOTE, "round not open"
        self._store_commit(taskId, round + 1, nextUpdateHash, nextCid)


@external
def closeRound(taskId: bytes32, round: uint256):
    """
    @notice After a deadline any admitted org may close the current round:
            commit phase -> voting with the committed orgs if >= quorum (the
            missing ones are recorded), else abort; vote phase -> abort.
    """
    self._onlyMember()
    assert self.tasks[taskId].status != 0, "unknown task"
    self._requireCurrent(taskId, round)
    assert block.timestamp > self.rounds[taskId][round].deadline, "deadline not reached"
    phase: uint8 = self.rounds[taskId][round].phase
    if phase == PHASE_COMMIT:
        c: uint256 = self.rounds[taskId][round].commits
        if c >= self.tasks[taskId].quorum:
            self._closeCommits(taskId, round, c)
        else:
            self._abort(taskId, round, "too few commitments")
    else:
        self._abort(taskId, round, "no quorum on global hash")


@external
def recordRejection(taskId: bytes32, round: uint256, org: address, reason: String[MAX_REASON]):
    """@notice A participant logs that it rejected org's update in a round."""
    self._onlyParticipant(taskId)
    assert self.isParticipant[taskId][org], "org not a participant"
    # A round is open once it has a phase, or commitments sent ahead (voteAndCommit).
    assert self.rounds[taskId][round].phase != 0 or self.rounds[taskId][round].commits > 0, "round not opened"
    self.rejectionCount[taskId] += 1
    log UpdateRejected(taskId=taskId, reporter=msg.sender, org=org, round=round, reason=reason)


@external
def recordReport(taskId: bytes32, round: uint256, kind: String[MAX_KIND], digest: bytes32, cid: String[MAX_CID]):
    """@notice A participant anchors a signed per-round report (privacy spend, validation
    scores, contributions...) by its digest and content id; round 0 is task-level."""
    self._onlyParticipant(taskId)
    assert len(kind) > 0, "empty report kind"
    assert digest != empty(bytes32), "empty report digest"
    assert round <= self.tasks[taskId].rounds, "round beyond the task"
    log ReportRecorded(taskId=taskId, reporter=msg.sender, kind=kind, round=round, digest=digest, cid=cid)


@external
def voteFinalModel(taskId: bytes32, modelHash: bytes32, accept: bool):
    """
    @notice A participant accepts or rejects the completed task's model (the last
            round's final hash), once. quorum accepts allow setFinalModel; more
            than n - quorum rejects make that impossible and reject the task.
    """
    self._onlyParticipant(taskId)
    assert self.tasks[taskId].status == STATUS_COMPLETED, "task not completed"
    assert modelHash == self.rounds[taskId][self.tasks[taskId].rounds].finalHash, "not the final round's model"
    assert self.finalVotes[taskId][msg.sender] == 0, "already voted"
    accepts: uint256 = self.finalAccepts[taskId]
    rejects: uint256 = self.finalRejects[taskId]
    if accept:
        self.finalVotes[taskId][msg.sender] = 1
        accepts += 1
        self.finalAccepts[taskId] = accepts
    else:
        self.finalVotes[taskId][msg.sender] = 2
        rejects += 1
        self.finalRejects[taskId] = rejects
    log FinalModelVoted(taskId=taskId, org=msg.sender, modelHash=modelHash, accept=accept, accepts=accepts, rejects=rejects)
    q: uint256 = self.tasks[taskId].quorum
    if accept and accepts == q:
        log FinalModelDecided(taskId=taskId, modelHash=modelHash, accepted=True, accepts=accepts, rejects=rejects)
    elif not accept and rejects + q == len(self.participants[taskId]) + 1:
        self.tasks[taskId].status = STATUS_REJECTED
        log FinalModelDecided(taskId=taskId, modelHash=modelHash, accepted=False, accepts=accepts, rejects=rejects)


@external
@view
def getFinalVote(taskId: bytes32, org: address) -> uint8:
    """@notice 0: no vote, 1: accept, 2: reject."""
    return self.finalVotes[taskId][org]


@external
def setFinalModel(taskId: bytes32, modelHash: bytes32, cid: String[MAX_CID]):
    """
    @notice "Uploading": the issuer archives the final model once, after the last
            round, if a quorum of participants accepted it (voteFinalModel).
    """
    self._onlyMember()
    assert self.tasks[taskId].status != 0, "unknown task"
    assert msg.sender == self.tasks[taskId].issuer, "not the issuer"
    assert self.tasks[taskId].status != STATUS_REJECTED, "final model rejected"
    assert self.tasks[taskId].status == STATUS_COMPLETED, "task not completed"
    assert modelHash != empty(bytes32), "empty model hash"
    assert modelHash == self.rounds[taskId][self.tasks[taskId].rounds].finalHash, "not the final round's model"
    assert self.finalAccepts[taskId] >= self.tasks[taskId].quorum, "final model not accepted"
    assert len(cid) > 0, "empty content id"
    self.tasks[taskId].finalModelHash = modelHash
    self.tasks[taskId].finalModelCid = cid
    self.tasks[taskId].status = STATUS_ARCHIVED
    log FinalModelSet(taskId=taskId, modelHash=modelHash, cid=cid)


# ------------------------------------------------------------------- views

@external
@view
def getTask(taskId: bytes32) -> Task:
    return self.tasks[taskId]


@external
@view
def getParticipants(taskId: bytes32) -> DynArray[address, MAX_PARTICIPANTS]:
    return self.participants[taskId]


@external
@view
def getRound(taskId: bytes32, round: uint256) -> Round:
    return self.rounds[taskId][round]


@external
@view
def getCommitment(taskId: bytes32, round: uint256, org: address) -> bytes32:
    """@notice The update hash org committed for the round (empty if none); its content id is in the event."""
    return self.commitments[taskId][round][org]


@external
@view
def getVote(taskId: bytes32, round: uint256, org: address) -> bytes32:
    return self.votes[taskId][round][org]


@external
@view
def hashVoteCount(taskId: bytes32, round: uint256, globalHash: bytes32) -> uint256:
    return self.hashVotes[taskId][round][globalHash]
