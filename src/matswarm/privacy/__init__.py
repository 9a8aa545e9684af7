"""Privacy of the orgs' rows and updates: differential privacy (:mod:`matswarm.privacy.dp`,
accounted by Opacus in :mod:`matswarm.privacy.accounting`) and secure aggregation
(:mod:`matswarm.privacy.secagg`, :mod:`matswarm.privacy.secagg_round`)."""

from matswarm.privacy.accounting import BudgetError
from matswarm.privacy.dp import PrivacyConfig, PrivacyPlan, make_private

__all__ = ["BudgetError", "PrivacyConfig", "PrivacyPlan", "make_private"]
