"""The Flower runtime: the same round protocol across machines (optional extra ``flower``).

* :mod:`.spec` - helpers around the one task spec (:class:`matswarm.protocol.spec.TaskSpec`):
  code-hash and initial-model checks, JSON I/O;
* :mod:`.node` - the org's long-lived node (:class:`OrgService`), served over :mod:`.channel`;
* :mod:`.clientapp` - the Flower ClientApp, a shim forwarding messages to the node;
* :mod:`.coordinator` / :mod:`.serverapp` - the untrusted relay driving the round engine;
* :mod:`.localgrid` - an in-process Grid (no Ray) for contract tests;
* :mod:`.deploy` - SuperLink/SuperNode processes, TLS, node keys, starting runs.

Importing this package imports nothing heavy; flwr is needed by the modules that use it.
"""

from matswarm.runtime.flower.env import quiet_flower

quiet_flower()

__all__ = ["quiet_flower"]
