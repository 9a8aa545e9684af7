"""The round protocol, written once: training, publication, verification, aggregation, finality."""

from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.engine import RoundEngine, RoundHooks, RoundRecord, TaskRun
from matswarm.protocol.messages import Update, vector_hash
from matswarm.protocol.participant import OrgNode, Participant

__all__ = [
    "Aggregator",
    "OrgNode",
    "Participant",
    "RoundEngine",
    "RoundHooks",
    "RoundRecord",
    "TaskRun",
    "Update",
    "vector_hash",
]
