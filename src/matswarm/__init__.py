"""matswarm: trusted swarm learning for materials-property regression.

Organisations train one property-prediction model together without sharing rows; every round's
global model is the deterministic aggregate of signed updates and can be re-checked by anyone
holding the ledger and the artifact store.
"""

__version__ = "0.1.0"
