"""The shipped ABI/bytecode is exactly what the pinned compiler makes of the source."""

from __future__ import annotations

import hashlib

from matswarm.ledger.compile import (
    ARTIFACT_PATH,
    EVM_VERSION,
    SOURCE_PATH,
    artifact_json,
    compile_contract,
    load_artifact,
)


def test_recompile_matches_shipped_artifact_byte_for_byte() -> None:
    fresh = artifact_json(compile_contract())
    assert fresh == ARTIFACT_PATH.read_text(), "run: python -m matswarm.ledger.compile"


def test_artifact_pins_fork_and_source() -> None:
    art = load_artifact()
    assert art["evm_version"] == EVM_VERSION == "cancun"
    assert art["vyper_version"] == "0.4.3"
    assert art["source_sha256"] == hashlib.sha256(SOURCE_PATH.read_bytes()).hexdigest()
    # the source pins the same fork, so `vyper SwarmLedger.vy` alone reproduces it
    assert f"# pragma evm-version {EVM_VERSION}" in SOURCE_PATH.read_text()
    # EIP-170: deployed code must stay under 24,576 bytes
    assert len(bytes.fromhex(art["bytecode_runtime"].removeprefix("0x"))) < 24_576
