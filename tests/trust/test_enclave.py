"""Simulated enclave: measurement, quotes, and what their verification catches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

import matswarm.trust
from matswarm.trust import (
    SIMULATED_NOTE,
    EnclaveRegistry,
    OrgIdentity,
    Quote,
    QuoteError,
    Reason,
    SimulatedEnclave,
    SimulatedQuoteVerifier,
    measure_files,
    measure_modules,
    sha256_hex,
)

TASK = "task-perovskite-01"
DATASET = sha256_hex(b"org-a rows")
START = sha256_hex(b"global model round 2")


@pytest.fixture(scope="module")
def setup():
    org = OrgIdentity.generate("org-a")
    enclave = SimulatedEnclave.for_modules(["matswarm.trust"], org="org-a")
    registry = EnclaveRegistry()
    registry.add(enclave.registration(org), org.public)
    return org, enclave, SimulatedQuoteVerifier(registry)


def train(weights: list[float]) -> bytes:
    """Stand-in for attested local training: returns the serialised update."""
    return json.dumps([w * 0.5 for w in weights]).encode()


def attested_update(enclave):
    return enclave.run(
        train,
        [1.0, -2.0, 3.0],
        purpose="train",
        task_id=TASK,
        round=3,
        inputs={"dataset": DATASET, "start_model": START},
    )


def verify(verifier, enclave, quote, output: bytes, **override):
    args = dict(
        measurement=enclave.measurement,
        purpose="train",
        task_id=TASK,
        round=3,
        output_hash=sha256_hex(output),
        inputs={"dataset": DATASET, "start_model": START},
        org="org-a",
    )
    args.update(override)
    verifier.verify(quote, **args)


def test_quote_verifies_after_json_round_trip(setup):
    _, enclave, verifier = setup
    result = attested_update(enclave)
    assert result.output == train([1.0, -2.0, 3.0])
    quote = Quote.from_json(result.quote.to_json())
    assert quote == result.quote
    verify(verifier, enclave, quote, result.output)
    assert quote.simulated and quote.to_dict()["note"] == SIMULATED_NOTE
    assert "SIMULATED" in repr(enclave)


def test_update_altered_after_training_rejected(setup):
    """Sign flip applied outside the enclave: the artifact no longer matches the quote."""
    _, enclave, verifier = setup
    result = attested_update(enclave)
    flipped = json.dumps([-w for w in json.loads(result.output)]).encode()
    with pytest.raises(QuoteError) as info:
        verify(verifier, enclave, result.quote, flipped)
    assert info.value.reason == Reason.OUTPUT_MISMATCH


def test_quote_with_altered_output_hash_rejected(setup):
    _, enclave, verifier = setup
    result = attested_update(enclave)
    fake_output = b"poisoned update"
    forged = dataclasses.replace(result.quote, output_hash=sha256_hex(fake_output))
    with pytest.raises(QuoteError) as info:
        verify(verifier, enclave, forged, fake_output)
    assert info.value.reason == Reason.BAD_SIGNATURE


def test_quote_with_altered_measurement_rejected(setup):
    _, enclave, verifier = setup
    result = attested_update(enclave)
    other = sha256_hex(b"patched training code")
    forged = dataclasses.replace(result.quote, measurement=other)
    with pytest.raises(QuoteError) as info:
        verify(verifier, enclave, forged, result.output, measurement=other)
    assert info.value.reason == Reason.WRONG_MEASUREMENT  # registered for other code
    with pytest.raises(QuoteError) as info:  # expected code differs from the attested code
        verify(verifier, enclave, result.quote, result.output, measurement=other)
    assert info.value.reason == Reason.WRONG_MEASUREMENT


def test_quote_from_other_code_rejected(setup):
    org, _, _ = setup
    rogue = SimulatedEnclave(sha256_hex(b"modified trainer"), org="org-a")
    registry = EnclaveRegistry()
    registry.add(rogue.registration(org), org.public)
    verifier = SimulatedQuoteVerifier(registry)
    agreed = measure_modules(["matswarm.trust"]).digest
    result = attested_update(rogue)
    with pytest.raises(QuoteError) as info:
        verifier.verify(result.quote, measurement=agreed, purpose="train", task_id=TASK, round=3)
    assert info.value.reason == Reason.WRONG_MEASUREMENT


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"purpose": "aggregate"}, Reason.WRONG_PURPOSE),
        ({"task_id": "other"}, Reason.WRONG_TASK),
        ({"round": 4}, Reason.WRONG_ROUND),
        ({"inputs": {"dataset": sha256_hex(b"other data")}}, Reason.INPUT_MISMATCH),
        ({"inputs": {"extra": DATASET}}, Reason.INPUT_MISMATCH),
        ({"org": "org-b"}, Reason.WRONG_ORG),
    ],
)
def test_quote_claims_checked(setup, override, reason):
    _, enclave, verifier = setup
    result = attested_update(enclave)
    with pytest.raises(QuoteError) as info:
        verify(verifier, enclave, result.quote, result.output, **override)
    assert info.value.reason == reason


def test_unregistered_enclave_rejected(setup):
    _, enclave, verifier = setup
    stranger = SimulatedEnclave(enclave.measurement, org="org-a")
    result = attested_update(stranger)
    with pytest.raises(QuoteError) as info:
        verify(verifier, enclave, result.quote, result.output)
    assert info.value.reason == Reason.UNKNOWN_ENCLAVE


def test_registration_must_be_signed_by_its_org(setup):
    org, enclave, _ = setup
    mallory = OrgIdentity.generate("mallory")
    fake = dataclasses.replace(
        enclave.registration(org),
        org_signature=mallory.sign(enclave.registration(org).signed_bytes()),
    )
    with pytest.raises(QuoteError) as info:
        EnclaveRegistry().add(fake, org.public)
    assert info.value.reason == Reason.BAD_SIGNATURE
    with pytest.raises(ValueError):
        enclave.registration(mallory)


def test_run_requires_bytes_output(setup):
    _, enclave, _ = setup
    with pytest.raises(TypeError, match="encode="):
        enclave.run(lambda: [1, 2], purpose="train", task_id=TASK, round=0, inputs={})
    result = enclave.run(
        lambda: [1, 2], purpose="train", task_id=TASK, round=0, inputs={}, encode=lambda v: bytes(v)
    )
    assert result.value == [1, 2] and result.output == b"\x01\x02"


def test_malformed_quote_rejected():
    with pytest.raises(QuoteError) as info:
        Quote.from_json("{}")
    assert info.value.reason == Reason.MALFORMED


def test_measurement_is_deterministic_and_location_independent(tmp_path):
    src = Path(matswarm.trust.__file__).parent
    files = sorted(src.glob("*.py"))
    for copy in ("one", "two"):
        dest = tmp_path / copy / "matswarm" / "trust"
        dest.mkdir(parents=True)
        for f in reversed(files):  # order of listing must not matter
            shutil.copy(f, dest / f.name)
    one = measure_files(sorted((tmp_path / "one").rglob("*.py")), root=tmp_path / "one")
    two = measure_files(list((tmp_path / "two").rglob("*.py")), root=tmp_path / "two")
    assert one == two
    assert one.digest == measure_modules(["matswarm.trust"]).digest
    # CRLF checkouts measure the same; a one-byte change does not
    target = tmp_path / "two" / "matswarm" / "trust" / "errors.py"
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n"))
    assert measure_files(list((tmp_path / "two").rglob("*.py")), root=tmp_path / "two") == one
    target.write_bytes(target.read_bytes() + b"#")
    changed = measure_files(list((tmp_path / "two").rglob("*.py")), root=tmp_path / "two")
    assert changed.digest != one.digest
    with pytest.raises(ValueError, match="not under"):
        measure_files([target], root=tmp_path / "one")


def test_label_flipping_is_not_stopped_but_data_swaps_are(setup):
    """Attestation proves which code ran on which bytes, not that the data are honest."""
    _, enclave, verifier = setup
    honest_rows = b"x1,y=+1.2\nx2,y=-0.3\n"
    flipped_rows = b"x1,y=-1.2\nx2,y=+0.3\n"  # label flipping: y -> -y

    def fit(rows: bytes) -> bytes:
        return hashlib.sha256(rows).digest()  # stand-in for training on ``rows``

    def attest(rows: bytes):
        return enclave.run(
            fit, rows, purpose="train", task_id=TASK, round=0, inputs={"dataset": rows}
        )

    # An org that committed the hash of flipped data gets a perfectly valid quote.
    result = attest(flipped_rows)
    verifier.verify(
        result.quote,
        measurement=enclave.measurement,
        purpose="train",
        task_id=TASK,
        round=0,
        output_hash=sha256_hex(result.output),
        inputs={"dataset": sha256_hex(flipped_rows)},
    )
    # Swapping data after committing the honest hash is caught.
    with pytest.raises(QuoteError) as info:
        verifier.verify(
            result.quote,
            measurement=enclave.measurement,
            purpose="train",
            task_id=TASK,
            round=0,
            inputs={"dataset": sha256_hex(honest_rows)},
        )
    assert info.value.reason == Reason.INPUT_MISMATCH
