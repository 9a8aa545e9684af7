"""Contribution accounting and participant governance (seed: blockchain FL on HPC).

* :mod:`~matswarm.contrib.valuation`: leave-one-out, exact and Monte-Carlo Shapley values;
* :mod:`~matswarm.contrib.scores`: candidate aggregates of coalitions, each org's validation
  scores, their deterministic combination;
* :mod:`~matswarm.contrib.policy`: the task's settings, the registration threshold, contribution
  weights, the final-model vote rule;
* :mod:`~matswarm.contrib.rounds`: per-round and per-task contributions documents;
* :mod:`~matswarm.contrib.hooks`: all of it inside the round (plain or trusted);
* :mod:`~matswarm.contrib.records`: reading the documents back from the ledger and store;
* :mod:`~matswarm.contrib.audit`: re-deriving them in ``matswarm verify``.
"""

from matswarm.contrib.hooks import ContributionHooks, attach_contributions
from matswarm.contrib.policy import ContributionSettings, contribution_weights
from matswarm.contrib.rounds import RoundContribution, ranking
from matswarm.contrib.scores import OrgValidator
from matswarm.contrib.validation import final_model_votes, split_validation
from matswarm.contrib.valuation import (
    ExactShapley,
    LeaveOneOut,
    MonteCarloShapley,
    ValuationMethod,
    make_method,
)

__all__ = [
    "ContributionHooks",
    "ContributionSettings",
    "ExactShapley",
    "LeaveOneOut",
    "MonteCarloShapley",
    "OrgValidator",
    "RoundContribution",
    "ValuationMethod",
    "attach_contributions",
    "contribution_weights",
    "final_model_votes",
    "make_method",
    "ranking",
    "split_validation",
]
