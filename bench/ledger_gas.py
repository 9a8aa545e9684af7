"""Gas and ledger CPU per round on the embedded chain (or anvil) for 3 and 15 orgs.

One round = every participant commits an update and votes the global hash. Transactions go
out as the trust layer sends them (``--layout combined``, the default): one transaction per
org and round carrying its vote on the previous round and its commitment for this one
(``voteAndCommit``), the round's transactions in one batch (``Ledger.send_batch``: one block
on the embedded chain). For comparison, ``round`` sends commitments and votes as separate
transactions in one batch, ``phase`` the commitments then the votes, ``tx`` each on its own.
CPU is this process's CPU time spent
inside ledger calls: signing, pre-flight ``eth_call``, EVM execution, block
persistence (SQLite) and event decoding.

    python bench/ledger_gas.py                       # embedded, 3 and 15 orgs, 20 rounds
    python bench/ledger_gas.py --backend anvil       # needs $MATSWARM_ANVIL or anvil on PATH
    python bench/ledger_gas.py --orgs 3 15 --rounds 50 --no-preflight --layout tx
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_account import Account

from matswarm.ledger import AnvilChain, EmbeddedChain, Ledger, RpcChain
from matswarm.ledger.anvil import AnvilNode


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _cid(label: str) -> str:
    """A realistic-length CIDv1 (raw, sha2-256, base32): 59 characters."""
    return "bafkrei" + h(label).hex()[:52]


@contextmanager
def _ledger(backend: str, workdir: Path, founder: object) -> Iterator[Ledger]:
    if backend in ("embedded", "anvil-embedded"):
        kind = "py-evm" if backend == "embedded" else "anvil"
        led = Ledger.embedded(workdir / "chain", founder, backend=kind)  # type: ignore[arg-type]
        try:
            yield led
        finally:
            led.close()
        return
    with AnvilNode() as node:
        chain = RpcChain(node.url)
        chain.fund(founder.address)  # type: ignore[attr-defined]
        led = Ledger.deploy(chain, founder)  # type: ignore[arg-type]
        try:
            yield led
        finally:
            led.close()


def run(n: int, rounds: int, backend: str, preflight: bool, layout: str) -> dict[str, float]:
    founder = Account.create()
    orgs = [Account.create() for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp, _ledger(backend, Path(tmp), founder) as led:
        led.preflight = preflight
        if isinstance(led.chain, RpcChain) and not led.chain.free_gas:
            for o in orgs:
                led.chain.fund(o.address)
        for o in orgs:
            led.propose_admission(o.address, os.urandom(32), os.urandom(32), "bench")
        task = led.create_task(
            [o.address for o in orgs],
            spec_hash=h("spec"),
            train_code_hash=h("t"),
            agg_code_hash=h("a"),
            rounds=rounds,
            round_duration_s=10**6,
        )
        created = led.events(task, names=["TaskCreated"])[0]
        create_gas = int(led.chain.w3.eth.get_transaction_receipt(created.tx_hash)["gasUsed"])
        views = [led.with_account(o) for o in orgs]
        # CPU of a node this process owns (anvil-embedded) counts as the ledger's too.
        node_cpu = getattr(led.chain, "node_cpu_seconds", lambda: 0.0)
        gas_round, cpu_round, wall_round = [], [], []
        commit_gas, vote_gas, final_gas, combined_gas = [], [], [], []
        head = led.chain.block_number()
        for r in range(1, rounds + 1):
            c0, w0, gas = time.process_time() + node_cpu(), time.perf_counter(), 0
            commits = [
                v.tx.commit_update(task, r, h(f"u{r}-{i}"), _cid(f"u{r}-{i}"))
                for i, v in enumerate(views)
            ]
            votes = [v.tx.vote_global(task, r, h(f"g{r}")) for v in views]
            if layout == "combined":
                # Round r's block: each org's vote on r - 1 with its commitment for r (one
                # transaction); round 1 has commitments only, the last round's votes follow.
                if r == 1:
                    results = led.send_batch(commits)
                else:
                    results = led.send_batch(
                        [
                            v.tx.vote_and_commit(
                                task, r - 1, h(f"g{r - 1}"), h(f"u{r}-{i}"), _cid(f"u{r}-{i}")
                            )
                            for i, v in enumerate(views)
                        ]
                    )
                for res in results:
                    gas += res.gas_used
                    (final_gas if res.event("RoundFinalized") else combined_gas).append(
                        res.gas_used
                    )
                if r == rounds:
                    tail = led.send_batch(votes)
                    gas += sum(res.gas_used for res in tail)
                cpu_round.append(time.process_time() + node_cpu() - c0)
                wall_round.append(time.perf_counter() - w0)
                gas_round.append(gas)
                continue
            if layout == "round":
                results = led.send_batch([*commits, *votes])
            elif layout == "phase":
                results = led.send_batch(commits) + led.send_batch(votes)
            else:
                results = [led.send(c) for c in (*commits, *votes)]
            for res in results[:n]:
                gas += res.gas_used
                commit_gas.append(res.gas_used)
            for res in results[n:]:
                gas += res.gas_used
                (final_gas if res.event("RoundFinalized") else vote_gas).append(res.gas_used)
            cpu_round.append(time.process_time() + node_cpu() - c0)
            wall_round.append(time.perf_counter() - w0)
            gas_round.append(gas)
        assert led.round_info(task, rounds).final_hash == h(f"g{rounds}")
        disk = 0
        if isinstance(led.chain, EmbeddedChain | AnvilChain):
            disk = sum(f.stat().st_size for f in led.chain.directory.iterdir() if f.is_file())
        return {
            "orgs": n,
            "rounds": rounds,
            "create_task_gas": create_gas,
            "gas_per_round": statistics.mean(gas_round),
            "commit_gas": statistics.mean(commit_gas or [0]),
            "vote_gas": statistics.mean(vote_gas or combined_gas),
            "finalising_vote_gas": statistics.mean(final_gas),
            "cpu_s_per_round": statistics.median(cpu_round),
            "cpu_ms_per_tx": 1000
            * statistics.median(cpu_round)
            / (n if layout == "combined" else 2 * n),
            "wall_s_per_round": statistics.median(wall_round),
            "chain_mb": disk / 1e6,
            "blocks_per_round": (led.chain.block_number() - head) / rounds,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orgs", type=int, nargs="+", default=[3, 15])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument(
        "--backend",
        choices=["embedded", "anvil-embedded", "anvil"],
        default="embedded",
        help="embedded: py-evm in this process; anvil-embedded: the embedded chain on an "
        "anvil node this process owns (its CPU counted); anvil: a plain JSON-RPC anvil",
    )
    ap.add_argument("--no-preflight", action="store_true", help="skip the eth_call before sending")
    ap.add_argument(
        "--layout",
        choices=["combined", "round", "phase", "tx"],
        default="combined",
        help="combined (the trust layer's): one transaction per org and round, its vote on "
        "the previous round with its commitment for this one, one batch; round: commitments "
        "and votes as separate transactions, one batch; phase: commitments, then votes; "
        "tx: one by one",
    )
    args = ap.parse_args()
    preflight = not args.no_preflight
    layout = args.layout
    if layout == "round" and preflight:
        ap.error("--layout round needs --no-preflight (votes pre-flight before the commitments)")
    try:
        import coincurve  # noqa: F401 - eth-keys uses it when present

        ecc = "coincurve"
    except ImportError:
        ecc = "pure-python"
    print(
        f"backend={args.backend} preflight={preflight} layout={layout} secp256k1={ecc} "
        f"python={platform.python_version()} cpu={platform.processor() or platform.machine()} "
        f"ncpu={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    cols = [
        "orgs", "rounds", "gas_per_round", "commit_gas", "vote_gas", "finalising_vote_gas",
        "create_task_gas", "cpu_s_per_round", "cpu_ms_per_tx", "wall_s_per_round",
        "blocks_per_round", "chain_mb",
    ]  # fmt: skip
    print(" | ".join(cols))
    for n in args.orgs:
        res = run(n, args.rounds, args.backend, preflight, layout)
        print(
            " | ".join(
                f"{res[c]:.0f}" if "gas" in c or c in ("orgs", "rounds") else f"{res[c]:.3f}"
                for c in cols
            )
        )


if __name__ == "__main__":
    main()
