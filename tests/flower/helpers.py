"""Helpers of the Flower runtime tests."""

from __future__ import annotations

from pathlib import Path

from matswarm.data import build_dataset, read_table
from matswarm.runtime.flower.spec import TaskSpec


def dataset_of(files: dict[str, Path]):
    return build_dataset({k: (read_table(p), str(p)) for k, p in files.items()}, "y", unit="a.u.")


def make_spec(files, algorithm="fedavg", rounds=3, **kw) -> TaskSpec:
    ds = dataset_of(files)
    params = {"local_steps": 4, "batch_size": 32, "lr": 3e-3}
    params.update(kw.pop("algorithm_params", {}))
    return TaskSpec(
        task=kw.pop("task", f"test-{algorithm}"),
        schema=ds.schema.to_dict(),
        orgs=tuple(ds.org_names),
        algorithm=algorithm,
        algorithm_params=params,
        model={"name": "mlp", "hidden": 16, "layers": 3},
        seed=kw.pop("seed", 3),
        rounds=rounds,
        **kw,
    )


def inprocess_hashes(files, spec: TaskSpec) -> list[str]:
    from matswarm.runtime import run_federated

    run = run_federated(
        dataset_of(files),
        spec.make_model_spec(),
        spec.make_algorithm(),
        spec.make_rule(),
        spec.seed,
    )
    return [r.global_hash for r in run.history]


def make_consortium(names, directory: Path, node_url: str, passphrase: str = "test-pass"):
    """Deploy the contract on the chain at ``node_url``, register ``names`` (all founders),
    write their keystores. Returns ``(ledger, identities, keystores)``."""
    from matswarm.ledger import Ledger, RpcChain
    from matswarm.protocol.trusted import org_metadata
    from matswarm.trust import OrgIdentity

    chain = RpcChain(node_url)
    ids = {n: OrgIdentity.generate(n) for n in names}
    for ident in ids.values():
        chain.fund(ident.evm_address)  # anvil charges gas
    ledger = Ledger.deploy(
        chain, ids[names[0]].evm_account(), [i.evm_address for i in ids.values()]
    )
    keystores = {}
    for name, ident in ids.items():
        pub = ident.public
        ledger.with_account(ident.evm_account()).register_org(
            bytes.fromhex(pub.ed25519), bytes.fromhex(pub.x25519), org_metadata(pub)
        )
        keystores[name] = ident.save(directory / f"{name}.keystore", passphrase, scrypt_n=2**14)
    return ledger, ids, keystores


def trusted_spec(ledger, ids, spec: TaskSpec, round_duration_s: int = 120):
    """Create ``spec``'s task on the ledger (issuer: the first org); the spec to relay."""
    from matswarm.runtime.flower.trust import protocol_spec_for, runtime_spec_from_protocol

    ps = protocol_spec_for(spec, round_duration_s=round_duration_s)
    task_id = ledger.with_account(ids[spec.orgs[0]].evm_account()).create_task(
        [ids[n].evm_address for n in spec.orgs],
        spec_hash=ps.digest(),
        train_code_hash=bytes.fromhex(ps.train_code_sha256),
        agg_code_hash=bytes.fromhex(ps.agg_code_sha256),
        rounds=ps.rounds,
        round_duration_s=ps.round_duration_s,
    )
    # What `matswarm task spec --protocol-spec ... --task-id ...` writes for the relay.
    relayed = runtime_spec_from_protocol(
        ps.to_json(),
        "0x" + task_id.hex(),
        round_deadline_s=spec.round_deadline_s,
        quorum=spec.quorum,
    )
    assert relayed.make_algorithm().get_params() == spec.make_algorithm().get_params()
    return relayed, task_id
