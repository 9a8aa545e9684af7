"""Soak test of a trusted task over Flower on loopback (issue 13; not in CI).

15 organisations, each a ``matswarm node start`` process with its own keystore, ledger account
(anvil JSON-RPC chain) and store; the SuperLink with TLS and node authentication; 50 trusted
rounds. Every 10 rounds one node is killed (SIGKILL) and restarted, and one network delay is
injected (the nodes reach the SuperLink through a relay that holds their traffic for
``--delay`` seconds per chunk during one round). Checked at the end:

* no lost or duplicated round: the coordinator's result and the ledger's ``RoundFinalized``
  events name each round 1..N exactly once;
* ``verify`` passes (the ledger, every org's blobs, an org's keys; the first org's own store
  is verified beside it: it lacks the rounds that org missed);
* memory per node: RSS of each node's process tree sampled at every round, printed at the
  first and last tenth of the run with its change, flat when it does not grow with rounds.

    python bench/flower_soak.py [--orgs 15] [--rounds 50] [--every 10] [--delay 1.0]
                                [--verification every-org|leader]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import _tree_rss_kib, machine
from matswarm.data import synthetic
from matswarm.experiments.compare import load_data
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.scaling import subset
from matswarm.experiments.scaling_flower import org_files
from matswarm.protocol.leader import Verification
from matswarm.runtime.flower.loopback import PASSPHRASE, LoopbackCluster
from matswarm.runtime.flower.spec import make_task_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orgs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--every", type=int, default=10, help="rounds between incidents")
    ap.add_argument("--delay", type=float, default=1.0, help="seconds held per chunk")
    ap.add_argument("--deadline", type=int, default=40, help="relay deadline per round (s)")
    ap.add_argument(
        "--commit-window",
        type=int,
        default=180,
        help="on-chain commit window per round (s); round 1's includes the run's set-up",
    )
    ap.add_argument(
        "--verification",
        choices=("every-org", "leader"),
        default="every-org",
        help="how the nodes check each round (matswarm.protocol.leader)",
    )
    ap.add_argument("--synthetic", action="store_true", help="synthetic data, not perovskite")
    ap.add_argument("--no-kill", action="store_true", help="inject the delays only")
    ap.add_argument(
        "--keep", type=Path, help="run in this directory and keep it (node logs, stores)"
    )
    args = ap.parse_args()
    # SIGTERM unwinds like an exception, so the cluster's processes are stopped by PID
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {machine()}", flush=True)
    if args.synthetic:
        base = synthetic.make_dataset(n_rows=3694, n_features=147, n_orgs=3, seed=0)
    else:
        cfg = ExperimentConfig.from_dict({"data": {"source": "perovskite"}}, source="soak")
        base, notice = load_data(cfg, allow_synthetic_fallback=True)
        if notice:
            print(f"NOTE: {notice}")
    ds = subset(base, fraction=1.0, n_features=base.schema.n_features, orgs=args.orgs, seed=0)
    names = ds.org_names
    rss: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
    incidents: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            d = args.keep
        else:
            d = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="matswarm-soak-")))
        files = org_files(ds, d / "data")
        schema = {
            "target": ds.schema.target,
            "unit": ds.schema.unit,
            "features": list(ds.schema.features),
        }
        spec = make_task_spec(
            "soak",
            names,
            schema,
            "fedavg",
            rounds=args.rounds,
            model={"name": "mlp"},
            seed=0,
            relay_deadline_s=args.deadline,
            verification=Verification(args.verification).spec_fields(),
        )
        t0 = time.perf_counter()
        with LoopbackCluster(files, d, trust=True, delay_proxy=True) as cluster:
            print(f"{args.orgs} nodes up in {time.perf_counter() - t0:.0f} s", flush=True)
            victims = iter(names[1:] * 10)  # never the issuer
            pending: dict[str, object] = {}

            def on_round(done: int, c: LoopbackCluster) -> None:
                for name, pid in c.node_pids().items():
                    rss[name].append((done, _tree_rss_kib(pid) / 1024))
                if "restart" in pending:  # the node killed last round comes back
                    name = pending.pop("restart")
                    threading.Thread(target=c.start_node, args=(name,), daemon=True).start()
                    incidents.append(f"after round {done}: restarted {name}")
                if "undelay" in pending:
                    pending.pop("undelay")
                    assert c.proxy is not None
                    c.proxy.delay_s = 0.0
                    incidents.append(f"after round {done}: delay off")
                if done % args.every == 0 and done < args.rounds and not args.no_kill:
                    name = next(victims)
                    c.kill_node(name)
                    pending["restart"] = name
                    incidents.append(f"after round {done}: killed {name} (SIGKILL)")
                if done % args.every == args.every // 2 and done < args.rounds:
                    assert c.proxy is not None
                    c.proxy.delay_s = args.delay
                    pending["undelay"] = True
                    incidents.append(f"after round {done}: delay {args.delay} s per chunk on")
                print(f"round {done} final at {time.perf_counter() - t0:.0f} s", flush=True)

            run = cluster.run(spec, on_round=on_round, round_duration_s=args.commit_window)
            wall = time.perf_counter() - t0
            ledger = cluster.ledger
            assert ledger is not None and run.task_id is not None
            finals = [int(e.args["round"]) for e in ledger.events(run.task_id, ["RoundFinalized"])]
            result_rounds = [r["round"] for r in run.result["rounds"]]
            from matswarm.protocol.verify import first_failure_line, verify_task
            from matswarm.store import LocalStore
            from matswarm.trust import OrgIdentity

            first = names[0]
            ident = OrgIdentity.load(cluster.keystores[first], PASSPHRASE)
            # The auditor's artifact store: every org's blobs (in production the consortium's
            # shared store), each checked against its content id as it is copied, so no blob
            # can be forged; plus the public spec and initial model (relayed to every node,
            # pinned by hash on the ledger). An org's own store lacks the rounds it missed
            # (killed, or its update past the relay's deadline): verified beside, for the record.
            from matswarm.protocol.codec import encode_vector

            audit = LocalStore(d / "audit-store", durable=False)
            for name in names:
                own = LocalStore(d / name / "store")
                for cid in own.cids():
                    audit.put(own.get(cid))
            info = ledger.task_info(run.task_id)
            recorded = run.spec
            n_features = len(recorded.schema["features"])
            public = [
                recorded.to_json(),
                encode_vector(recorded.model_spec().build(n_features, recorded.seed).get_flat()),
            ]
            own_store = LocalStore(d / first / "store")
            for blob in public:
                audit.put(blob)
                own_store.put(blob)
            assert recorded.digest() == info.spec_hash, "spec differs from the ledger's"
            report = verify_task(ledger, audit, run.task_id, identity=ident)
            own_report = verify_task(ledger, own_store, run.task_id, identity=ident)
            closes = ledger.events(run.task_id, ["CommitsClosed"])
            short = [int(e.args["round"]) for e in closes if e.args["missing"]]
    expected = list(range(1, args.rounds + 1))
    print("\nincidents:")
    for line in incidents:
        print(f"  {line}")
    print(
        f"\nwall {wall:.0f} s for {args.rounds} trusted rounds ({args.verification}), "
        f"{args.orgs} nodes; "
        f"median round {statistics.median(run.round_times):.2f} s"
    )
    print(f"coordinator rounds 1..{args.rounds} once each: {sorted(result_rounds) == expected}")
    print(f"ledger RoundFinalized 1..{args.rounds} once each: {sorted(finals) == expected}")
    print(f"verify (every org's blobs, {first}'s keys): {first_failure_line(report)}")
    print(f"  from {first}'s own store alone: {first_failure_line(own_report)}")
    print(f"rounds the contract closed with orgs missing (no commitment): {short}")
    print("rounds the coordinator aggregated without some orgs (killed, or reply past deadline):")
    for r in run.result["rounds"]:
        if r.get("missing"):
            print(f"  round {r['round']}: without {', '.join(r['missing'])}")
    print("\nmemory per node (RSS of the node's process tree, MiB): first tenth -> last tenth")
    growth = []
    for name in names:
        pts = rss[name]
        if len(pts) < 4:
            print(f"  {name}: {len(pts)} samples, too few to show a trend (run more rounds)")
            continue
        k = max(1, len(pts) // 10)
        a = statistics.mean(v for _, v in pts[:k])
        b = statistics.mean(v for _, v in pts[-k:])
        growth.append(b - a)
        print(f"  {name}: {a:6.1f} -> {b:6.1f} ({b - a:+.1f}) over {len(pts)} samples")
    if growth:
        print(f"median change {statistics.median(growth):+.1f} MiB, max {max(growth):+.1f} MiB")
    ok = sorted(result_rounds) == expected and sorted(finals) == expected and report.ok
    print(f"\nSOAK {'PASS' if ok else 'FAIL'} (load average now {os.getloadavg()[0]:.1f})")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
