"""Compile the ledger contract and load the shipped artifact.

The ABI and bytecode are shipped as JSON next to the Vyper source so that users
need no compiler; ``tests/ledger/test_artifact.py`` recompiles and compares the
bytes, so anyone can check that the deployed code is this source.

Regenerate after editing the contract with::

    python -m matswarm.ledger.compile
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).with_name("contracts")
CONTRACT_NAME = "SwarmLedger"
SOURCE_PATH = CONTRACTS_DIR / f"{CONTRACT_NAME}.vy"
ARTIFACT_PATH = CONTRACTS_DIR / f"{CONTRACT_NAME}.json"

#: Pinned compiler and fork. Cancun runs on py-evm (Prague VM is a superset), on
#: anvil and on every Besu release since 24.1; bumping it can break older chains
#: (an unknown opcode deploys fine and then burns all gas at run time).
VYPER_VERSION = "0.4.3"
EVM_VERSION = "cancun"
OPTIMIZE = "gas"
#: Vyper's Venom pipeline (``experimental_codegen``): about a third fewer opcodes per
#: commit and vote than the legacy code generator (SHA3 and stack shuffles halve), and the
#: EVM interpreter of the embedded chain pays per opcode. The contract tests run on it.
EXPERIMENTAL_CODEGEN = True


def compile_contract() -> dict[str, Any]:
    """Compile ``SwarmLedger.vy`` with the pinned settings; needs ``vyper`` installed."""
    import vyper
    from vyper.compiler.settings import OptimizationLevel, Settings

    if vyper.__version__.split("+")[0] != VYPER_VERSION:
        raise RuntimeError(f"vyper {VYPER_VERSION} required, found {vyper.__version__}")
    source = SOURCE_PATH.read_text()
    settings = Settings(
        evm_version=EVM_VERSION,
        optimize=OptimizationLevel.from_string(OPTIMIZE),
        experimental_codegen=EXPERIMENTAL_CODEGEN,
    )

    def compile_(fmt: str) -> Any:
        return vyper.compile_code(
            source, contract_path=SOURCE_PATH.name, output_formats=[fmt], settings=settings
        )[fmt]

    # One output format per compilation: with Venom, vyper 0.4.3 asked for "bytecode" and
    # "bytecode_runtime" together can return a runtime that differs (a shifted jump table)
    # from the one the deploy code installs; compiled alone, the runtime is the deployed one.
    abi, bytecode, runtime = compile_("abi"), compile_("bytecode"), compile_("bytecode_runtime")
    if runtime[2:] not in bytecode:
        raise RuntimeError("vyper's runtime bytecode is not the one its deploy code installs")
    return {
        "contract": CONTRACT_NAME,
        "vyper_version": VYPER_VERSION,
        "evm_version": EVM_VERSION,
        "optimize": OPTIMIZE,
        "experimental_codegen": EXPERIMENTAL_CODEGEN,
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": abi,
        "bytecode": bytecode,
        "bytecode_runtime": runtime,
    }


def artifact_json(artifact: dict[str, Any]) -> str:
    """Canonical JSON text of an artifact (stable key order, trailing newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


@cache
def load_artifact() -> dict[str, Any]:
    """The shipped artifact: ``abi``, ``bytecode`` (deploy) and ``bytecode_runtime``."""
    return json.loads(ARTIFACT_PATH.read_text())


def main() -> None:
    """Rewrite the shipped artifact from the source."""
    ARTIFACT_PATH.write_text(artifact_json(compile_contract()))
    print(f"wrote {ARTIFACT_PATH}")


if __name__ == "__main__":
    main()
