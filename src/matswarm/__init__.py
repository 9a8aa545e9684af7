"""matswarm: trusted swarm learning for materials-property regression.

Organisations train one property-prediction model together without sharing rows; every round's
global model is the deterministic aggregate of signed updates and can be re-checked by anyone
holding the ledger and the artifact store.
"""

import importlib.util as _importlib_util
import os as _os

__version__ = "0.1.0"

# eth-hash (keccak for web3 and py-evm) picks its backend at the first hash, from this variable
# if set, else pycryptodome. The C backend of its `pysha3` extra is several times faster, and
# the embedded chain hashes hundreds of trie nodes per block. A user's own choice is kept.
if "ETH_HASH_BACKEND" not in _os.environ and _importlib_util.find_spec("sha3") is not None:
    _os.environ["ETH_HASH_BACKEND"] = "pysha3"
