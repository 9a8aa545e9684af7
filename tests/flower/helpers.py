"""Helpers of the Flower runtime tests."""

from __future__ import annotations

from pathlib import Path

from matswarm.data import build_dataset, read_table
from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.flower.spec import make_task_spec


def dataset_of(files: dict[str, Path]):
    return build_dataset({k: (read_table(p), str(p)) for k, p in files.items()}, "y", unit="a.u.")


def make_spec(files, algorithm="fedavg", rounds=3, **kw) -> TaskSpec:
    """A task spec over ``files`` (``round_deadline_s``: the relay's deadline, default 60 s)."""
    ds = dataset_of(files)
    params = {"local_steps": 4, "batch_size": 32, "lr": 3e-3}
    params.update(kw.pop("algorithm_params", {}))
    return make_task_spec(
        kw.pop("task", f"test-{algorithm}"),
        ds.org_names,
        ds.schema.to_dict(),
        algorithm,
        algorithm_params=params,
        rounds=rounds,
        model={"name": "mlp", "hidden": 16, "layers": 3},
        seed=kw.pop("seed", 3),
        relay_deadline_s=kw.pop("round_deadline_s", 60.0),
        **kw,
    )


def inprocess_hashes(files, spec: TaskSpec) -> list[str]:
    from matswarm.runtime import run_federated

    run = run_federated(
        dataset_of(files),
        spec.model_spec(),
        spec.build_algorithm(),
        spec.build_rule(),
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
    """Create ``spec``'s task on the ledger (issuer: the first org) with a ``round_duration_s``
    commit window (the relay keeps ``spec``'s deadline). Returns ``(spec, task_id)``: the spec
    the ledger records, which the coordinator relays with the task id."""
    import dataclasses

    spec = dataclasses.replace(
        spec, round_duration_s=round_duration_s, relay_deadline_s=spec.round_deadline_s
    )
    task_id = ledger.with_account(ids[spec.participants[0]].evm_account()).create_task(
        [ids[n].evm_address for n in spec.participants],
        spec_hash=spec.digest(),
        train_code_hash=bytes.fromhex(spec.train_code_sha256),
        agg_code_hash=bytes.fromhex(spec.agg_code_sha256),
        rounds=spec.rounds,
        round_duration_s=spec.round_duration_s,
    )
    return spec, task_id
