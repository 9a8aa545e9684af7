"""Privacy mechanisms: secure aggregation (:mod:`matswarm.privacy.secagg`) and differential
privacy."""
