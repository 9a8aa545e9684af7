"""The dashboard in a real browser (Playwright driving Debian's chromium) over a real home:
``matswarm dashboard`` and ``matswarm task run-local`` run as separate processes, as an operator
would run them. Screenshots of every page go to ``$MATSWARM_SCREENSHOTS`` (default: a pytest
temporary directory; never the repository)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .consortium_home import PASSPHRASE, make_home

CHROMIUM = Path(os.environ.get("MATSWARM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROUNDS = 12
ORGS = 3

if os.environ.get("MATSWARM_REQUIRE_BROWSER"):  # CI: a missing browser stack is a failure
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited: {_stop(proc)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (e.g. 401 without the token)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _matswarm(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "matswarm.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MATSWARM_PASSPHRASE", PASSPHRASE)
        mp.setenv("OMP_NUM_THREADS", "1")
        yield dict(os.environ)


@pytest.fixture(scope="module")
def site(tmp_path_factory, env):
    """A home with one joined (not yet run) task, and its dashboard on a free port."""
    root = tmp_path_factory.mktemp("dashboard")
    home, task, eval_csv = make_home(
        root, n_orgs=ORGS, rounds=ROUNDS, hidden=16, rows=600, local_steps=10
    )
    port = _free_port()
    proc = _matswarm(
        "dashboard", "--home", str(home), "--port", str(port), "--poll-ms", "150",
        "--eval-data", str(eval_csv), env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/tasks", proc)
        yield {"base": base, "home": home, "task": task, "proc": proc}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        if os.environ.get("MATSWARM_REQUIRE_BROWSER"):
            pytest.fail(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = os.environ.get("MATSWARM_SCREENSHOTS")
    path = Path(d) if d else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _shot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert (shots / f"{name}.png").stat().st_size > 5_000


def test_pages_render_and_rounds_fill_while_the_task_runs(site, browser, shots, env):
    page = browser.new_page()
    page.goto(site["base"] + "/members")
    rows = page.locator("#members tr")
    assert rows.count() == ORGS + 1
    assert "lab-a" in page.inner_text("#members") and "yes" in rows.nth(1).inner_text()
    _shot(page, shots, "members")

    page.goto(site["base"] + "/tasks")
    assert "dashboard-demo" in page.inner_text("#tasks") and "active" in page.inner_text("#tasks")
    _shot(page, shots, "tasks")
    page.click(f"a[href='/task/{site['task']}']")
    assert page.inner_text("#status").startswith("Status: active")
    assert page.inner_text("#rounds-final") == "0"
    assert "no final model" in page.inner_text("#final-model").lower()
    _shot(page, shots, "task-before-run")

    run = _matswarm("task", "run-local", site["task"], "--home", str(site["home"]), env=env)
    try:
        # The page updates itself (no reload): some rounds final while the task is active.
        page.wait_for_function(
            "() => { const p = document.querySelector('#progress');"
            f" const k = parseInt(p.dataset.final); return p.dataset.status === 'active'"
            f" && k > 0 && k < {ROUNDS}; }}",
            timeout=90_000,
        )
        assert run.poll() is None  # the writer is still running: this was read beside it
        _shot(page, shots, "task-running")
        assert page.locator("tr.round[data-phase='final']").count() >= 1
        # Archived: the page reloads once and shows the final model and the charts.
        page.wait_for_selector("#final-cid", timeout=90_000)
        assert run.wait(60) == 0, _stop(run)
    finally:
        out = _stop(run)
    cid = page.inner_text("#final-cid")
    assert cid.startswith("bafk") and cid in out
    assert page.locator("tr.round[data-phase='final']").count() == ROUNDS
    assert page.inner_text("#status").startswith("Status: archived")
    for chart in ("#mse-chart", "#parity-chart"):
        assert page.eval_on_selector(chart, "img => img.complete && img.naturalWidth > 200")
    # Commitments and votes with their transaction ids, per round.
    detail = page.locator("details.round-detail").first.inner_text()
    assert len(re.findall(r"0x[0-9a-f]{64}", detail)) >= 2 * ORGS
    assert "No update was rejected" in page.inner_text("#no-rejections")
    _shot(page, shots, "task-archived")
    # Rounds beyond the latest few have a page each.
    page.click("#older-rounds a >> text='1'")
    assert page.inner_text("h1").startswith("Round 1 of task dashboard-demo")
    assert page.inner_text("#round-status").startswith("final")
    assert len(re.findall(r"0x[0-9a-f]{64}", page.inner_text("table.round-table"))) == 2 * ORGS
    _shot(page, shots, "round")
    page.close()


def _commitment_blob(home: Path, task: str, round_: int, org: str) -> Path:
    from matswarm.runtime.local import Home
    from matswarm.store import LocalStore
    from matswarm.web.data import open_readonly_ledger

    h = Home(home)
    led = open_readonly_ledger(h)
    try:
        addr = h.identity(org).evm_address
        cid = led.commitments(bytes.fromhex(task[2:]), round_)[addr].cid
    finally:
        led.close()
    store = h.store()
    assert isinstance(store, LocalStore)
    return store.path_of(cid)


def test_verify_passes_then_names_the_round_of_a_tampered_artifact(site, browser, shots):
    task_url = f"{site['base']}/task/{site['task']}"
    page = browser.new_page()
    page.goto(task_url)
    if page.locator("#final-cid").count() == 0:
        pytest.skip("needs the archived task of the previous test")
    page.click("#verify")
    verdict = page.inner_text("#verdict")
    assert verdict == f"PASS: {ROUNDS} of {ROUNDS} rounds re-derived and verified"
    _shot(page, shots, "verify-pass")

    blob = _commitment_blob(site["home"], site["task"], 5, "lab-b")
    backup = blob.with_name(blob.name + ".orig")
    shutil.copy2(blob, backup)
    try:
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit in lab-b's round-5 update
        os.chmod(blob, 0o644)
        blob.write_bytes(bytes(data))
        page.goto(task_url)
        page.click("#verify")
        verdict = page.inner_text("#verdict")
        assert verdict.startswith("FAIL at round 5"), verdict
        assert page.inner_text("#bad-round") == "5"
        assert page.inner_text("#bad-org") == "lab-b"
        assert "integrity check failed" in page.inner_text("#findings")
        _shot(page, shots, "verify-tampered")
    finally:
        os.chmod(blob, 0o644)
        shutil.move(backup, blob)
        os.chmod(blob, 0o444)
    page.close()


def test_unknown_task_is_a_clear_page(site, browser):
    page = browser.new_page()
    resp = page.goto(site["base"] + "/task/0x" + "00" * 32)
    assert resp is not None and resp.status == 404
    assert "unknown task" in page.inner_text("#error")
    resp = page.goto(site["base"] + "/task/0x12")
    assert resp is not None and resp.status == 400 and "32 bytes" in page.inner_text("#error")
    page.close()


def test_beyond_loopback_a_generated_token_is_required(site, browser, env):
    port = _free_port()
    proc = _matswarm(
        "dashboard", "--home", str(site["home"]), "--host", "0.0.0.0", "--port", str(port), env=env
    )
    try:
        deadline = time.monotonic() + 60
        printed = ""
        while "token=" not in printed and time.monotonic() < deadline:
            assert proc.poll() is None, _stop(proc)
            assert proc.stdout is not None
            printed += proc.stdout.readline()
        token = re.search(r"token=([\w-]+)", printed)
        assert token, printed
        _wait_http(f"http://127.0.0.1:{port}/tasks", proc)
        page = browser.new_page()
        resp = page.goto(f"http://127.0.0.1:{port}/members")
        assert resp is not None and resp.status == 401
        resp = page.goto(f"http://127.0.0.1:{port}/members?token=wrong")
        assert resp is not None and resp.status == 401
        page.goto(f"http://127.0.0.1:{port}/members?token={token.group(1)}")
        assert "?token" not in page.url and "lab-a" in page.inner_text("#members")
        page.goto(f"http://127.0.0.1:{port}/tasks")  # the cookie carries the token now
        assert "dashboard-demo" in page.inner_text("#tasks")
        page.close()
    finally:
        _stop(proc)


def test_rejections_reports_and_contributions_are_shown(site, browser, shots):
    """Anchored on the ledger as the contributions helper and a rejecting org would: a
    rejection with its reason, a contributions document (values chosen here: this checks the
    display, not the accounting), another kind of report, and a contributions report whose
    digest does not match the stored document."""
    import hashlib
    import json

    from matswarm.runtime.local import Home

    h = Home(site["home"])
    tid = bytes.fromhex(site["task"][2:])
    a, b, c = (h.identity(n) for n in ("lab-a", "lab-b", "lab-c"))
    doc = {
        "task": site["task"],
        "round": 0,
        "method": "shapley",
        "metric": "val_mse",
        "values": {a.evm_address: 0.25, b.evm_address: 0.5, c.evm_address: -0.125},
        "stderr": None,
        "names": {a.evm_address: "lab-a", b.evm_address: "lab-b", c.evm_address: "lab-c"},
    }
    blob = json.dumps(doc).encode()
    store = h.store()
    cid = store.put(blob)
    other = store.put(b'{"kind": "dp-epsilon"}')
    with h.ledger(a.evm_account()) as led:
        led.record_rejection(tid, 3, c.evm_address, "validation score below the threshold")
        led.record_report(tid, 0, "contributions", hashlib.sha256(blob).digest(), cid)
        led.record_report(tid, 2, "dp-epsilon", hashlib.sha256(b"something else").digest(), other)
        led.record_report(tid, 1, "contributions", hashlib.sha256(b"not it").digest(), cid)
    page = browser.new_page()
    page.goto(f"{site['base']}/task/{site['task']}")
    rejections = page.inner_text("#rejections")
    assert "lab-c" in rejections and "below the threshold" in rejections
    assert re.search(r"0x[0-9a-f]{64}", rejections)  # the rejection's transaction id
    table = page.locator("table.contributions").first
    rows = [r.split("\t") for r in table.inner_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["lab-b", "lab-a", "lab-c"]  # highest value first
    assert rows[0][1] == "0.5" and rows[2][1] == "-0.125"
    assert "whole task: shapley on val_mse" in page.inner_text("body")
    reports = page.inner_text("#reports")
    assert "dp-epsilon" in reports and cid in reports and other in reports
    # A contributions document that is not what the ledger anchored is flagged, not shown.
    assert reports.count("does not match the digest on the ledger") == 1
    assert page.locator("table.contributions").count() == 1
    _shot(page, shots, "task-rejections-contributions")
    page.close()
