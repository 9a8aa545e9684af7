"""Server-side render time of every dashboard page for a large task (default 15 orgs, 40 rounds).

    python bench/dashboard_render.py [--orgs 15] [--rounds 40] [--repeat 5] [--home DIR]

Builds a real home through the CLI (orgs, embedded ledger, store, an encrypted MatSwarm task on
synthetic tables), runs it with ``matswarm task run-local`` in a subprocess, and meanwhile
renders the task page and the live round fragment beside the writer. Afterwards it anchors one
contributions report per round (random numbers, labelled as such: render load only, no result)
and renders every page cold (first request after the app starts: caches empty) and warm
(median and max of ``--repeat``). Times are wall-clock per request through the ASGI app
(httpx's in-process transport: template rendering and every ledger/store read, no network),
printed with the ratio to the 1 s budget. The Verify action is timed too (it is an action, not
a page: a full re-derivation of every round).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.web.consortium_home
from _measure import machine

BUDGET_S = 1.0


def build(root: Path, orgs: int, rounds: int) -> tuple[Path, str, Path, float]:
    from tests.web.consortium_home import PASSPHRASE, make_home

    os.environ["MATSWARM_PASSPHRASE"] = PASSPHRASE
    t0 = time.perf_counter()
    home, task, eval_csv = make_home(
        root, n_orgs=orgs, rounds=rounds, hidden=16, rows=100 * orgs, encrypt=True
    )
    return home, task, eval_csv, time.perf_counter() - t0


def anchor_contributions(home: Path, task: str, rounds: int) -> int:
    """One ``contributions`` report per round by the issuer (random values: render load)."""
    import numpy as np

    from matswarm.runtime.local import Home

    h = Home(home)
    store = h.store()
    tid = bytes.fromhex(task[2:])
    with h.ledger() as ro:
        info = ro.task_info(tid)
    names = {}
    for p in (home / "orgs").glob("*.pub.json"):
        pub = json.loads(p.read_text())
        names[pub["evm_address"]] = pub["name"]
    issuer = h.identity(names[info.issuer])
    rng = np.random.default_rng(0)
    with h.ledger(issuer.evm_account()) as led, led.batch() as batch:
        for r in range(1, rounds + 1):
            doc = {
                "task": task,
                "round": r,
                "method": "loo",
                "metric": "bench-filler (random numbers, render load only)",
                "values": {a: float(rng.normal()) for a in info.participants},
                "stderr": None,
                "names": {a: names[a] for a in info.participants},
            }
            blob = json.dumps(doc, sort_keys=True).encode()
            cid = store.put(blob)
            batch.add(
                led.tx.record_report(tid, r, "contributions", hashlib.sha256(blob).digest(), cid)
            )
    return rounds


def timed(client, method: str, url: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    resp = client.request(method, url)
    return time.perf_counter() - t0, resp.status_code, len(resp.content)


def timed_cpu(client, url: str) -> tuple[float, float]:
    """(wall s, CPU s of this process) of one GET: CPU far below wall means the render
    waited (for a CPU on a loaded machine, or for I/O), not that it computed."""
    c0, t0 = time.process_time(), time.perf_counter()
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    return time.perf_counter() - t0, time.process_time() - c0


def render_beside_run(client, home: Path, task: str, rounds: int) -> None:
    """Run the task in a subprocess; render the task page and fragment beside it."""
    task_url = f"/task/{task}"
    live: dict[str, list[float]] = {task_url: [], task_url + "/progress": []}
    cpu: dict[str, list[float]] = {url: [] for url in live}
    t0 = time.perf_counter()
    run = subprocess.Popen(
        [sys.executable, "-m", "matswarm.cli.main", "task", "run-local", task, "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    while run.poll() is None:
        for url in live:
            dt, dc = timed_cpu(client, url)
            live[url].append(dt)
            cpu[url].append(dc)
        time.sleep(0.5)
    out = run.stdout.read() if run.stdout else ""
    if run.returncode != 0:
        raise SystemExit(f"run-local failed:\n{out}")
    t_run = time.perf_counter() - t0
    print(
        f"task run-local: {t_run:.1f} s ({t_run / rounds:.2f} s/round), "
        f"while the dashboard rendered beside it:"
    )
    for url, ts in live.items():
        p95 = statistics.quantiles(ts, n=20)[-1] if len(ts) > 1 else ts[0]
        worst = max(range(len(ts)), key=ts.__getitem__)
        print(
            f"  {url.replace(task, 'TASK'):<22} {len(ts):4d} renders  median "
            f"{statistics.median(ts) * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  max "
            f"{ts[worst] * 1e3:7.1f} ms (render #{worst + 1}, {cpu[url][worst] * 1e3:.0f} ms "
            f"of CPU; max/budget {ts[worst] / BUDGET_S:.2f}; "
            f"{sum(t > BUDGET_S for t in ts)} over budget); median CPU "
            f"{statistics.median(cpu[url]) * 1e3:.1f} ms, max CPU {max(cpu[url]) * 1e3:.1f} ms"
        )


def render_pages(client, task: str, repeat: int) -> tuple[float, float, str]:
    """Every page cold then warm; returns (slowest page s, verify s, verify verdict)."""
    task_url = f"/task/{task}"
    pages = ["/members", "/tasks", task_url, task_url + "/progress", task_url + "/round/1"]
    pages += [task_url + "/mse.png", task_url + "/parity.png"]
    print(
        f"{'page':<22} {'bytes':>8} {'cold ms':>9} {'warm med':>9} {'warm max':>9} "
        f"{'max/budget':>10}"
    )
    worst = 0.0
    for url in pages:
        cold, status, size = timed(client, "GET", url)
        assert status == 200, (url, status)
        warm = [timed(client, "GET", url)[0] for _ in range(repeat)]
        worst = max(worst, cold, *warm)
        print(
            f"{url.replace(task, 'TASK'):<22} {size:8d} {cold * 1e3:9.1f} "
            f"{statistics.median(warm) * 1e3:9.1f} {max(warm) * 1e3:9.1f} "
            f"{max(cold, *warm) / BUDGET_S:10.2f}"
        )
    t0 = time.perf_counter()
    resp = client.post(task_url + "/verify")
    dt = time.perf_counter() - t0
    assert resp.status_code == 200, resp.text
    verdict = re.search(r'id="verdict"[^>]*>([^<]*)<', resp.text)
    return worst, dt, verdict.group(1) if verdict else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orgs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--home", type=Path, help="Build in this folder (default: a temporary one).")
    ap.add_argument(
        "--reuse", action="store_true", help="--home holds a finished run: only render pages."
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {machine()}")
    from fastapi.testclient import TestClient

    from matswarm.runtime.local import Home
    from matswarm.web.app import create_app

    root = args.home or Path(tempfile.mkdtemp(prefix="matswarm-dash-bench-"))
    if args.reuse:
        from tests.web.consortium_home import PASSPHRASE

        os.environ["MATSWARM_PASSPHRASE"] = PASSPHRASE
        home, eval_csv = root / "home", root / "public-test.csv"
        with Home(home).ledger() as led:
            (created,) = led.events(names=["TaskCreated"])
            task = created.args["taskId"]
            info = led.task_info(bytes.fromhex(task[2:]))
            n_reports = len(led.reports(bytes.fromhex(task[2:])))
        n_orgs, n_rounds = len(info.participants), info.rounds
    else:
        root.mkdir(parents=True, exist_ok=True)
        n_orgs, n_rounds = args.orgs, args.rounds
        home, task, eval_csv, t_build = build(root, n_orgs, n_rounds)
        print(
            f"built {home}: {n_orgs} orgs, task {task[:12]}… of {n_rounds} rounds "
            f"(encrypted updates) in {t_build:.1f} s"
        )
    h = Home(home)
    ident = h.identity("lab-a")
    if not args.reuse:
        with TestClient(create_app(h, eval_data=eval_csv, verify_identity=ident)) as client:
            render_beside_run(client, home, task, n_rounds)
        n_reports = anchor_contributions(home, task, n_rounds)
        print(f"anchored {n_reports} contributions reports ({n_orgs} values each)")
    print(
        f"\nafter the run ({n_orgs} orgs, {n_rounds} rounds, {n_reports} reports); "
        f"cold = first request after the app started, warm = median/max of {args.repeat}"
    )
    t0 = time.perf_counter()
    app = create_app(h, eval_data=eval_csv, verify_identity=ident)
    print(
        f"app start (index {app.state.events_indexed} events, warm caches, draw charts): "
        f"{time.perf_counter() - t0:.2f} s"
    )
    with TestClient(app) as client:
        worst, dt, verdict = render_pages(client, task, args.repeat)
    print(
        f"slowest page: {worst * 1e3:.1f} ms (budget {BUDGET_S * 1e3:.0f} ms: "
        f"{'met' if worst <= BUDGET_S else 'NOT met'})"
    )
    print(
        f"Verify action (full re-derivation of {n_rounds} rounds with lab-a's key): "
        f"{dt:.2f} s: {verdict}"
    )


if __name__ == "__main__":
    main()
