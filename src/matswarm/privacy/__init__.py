"""Privacy of the orgs' rows: differential privacy (:mod:`matswarm.privacy.dp`, accounted by
Opacus in :mod:`matswarm.privacy.accounting`)."""

from matswarm.privacy.accounting import BudgetError
from matswarm.privacy.dp import PrivacyConfig, PrivacyPlan, make_private

__all__ = ["BudgetError", "PrivacyConfig", "PrivacyPlan", "make_private"]
