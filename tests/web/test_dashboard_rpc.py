"""The dashboard over a consortium whose ledger is a JSON-RPC chain (a real anvil node): the
same read-only pages, through the node, with an event index of the dashboard's own."""

from __future__ import annotations

import json
import os

import pytest
from eth_account import Account

from matswarm.ledger import Ledger, RpcChain
from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.runtime.local import Home

pytestmark = pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV),
    reason="anvil not found: npm install --prefix ~/.cache/matswarm-anvil @foundry-rs/anvil@1.7.1",
)
testclient = pytest.importorskip("fastapi.testclient")


def test_members_page_over_json_rpc(tmp_path):
    from matswarm.web.app import create_app

    with AnvilNode(chain_id=31337) as node:
        chain = RpcChain(node.url)
        founder, other = Account.create(), Account.create()
        for a in (founder, other):
            chain.fund(a.address)
        led = Ledger.deploy(chain, founder)
        try:
            meta = json.dumps({"name": "lab-rpc"})
            led.register_org(os.urandom(32), os.urandom(32), meta)
            led.propose_admission(other.address, os.urandom(32), os.urandom(32), "{}")
            rpc = {"url": node.url, "address": led.address, "chain_id": 31337}
        finally:
            led.close()
        home = tmp_path / "home"
        home.mkdir()
        (home / "consortium.json").write_text(
            json.dumps({"ledger": {"backend": "rpc", **rpc}, "store": "store"})
        )
        before = sorted(p.name for p in home.iterdir())
        with testclient.TestClient(create_app(Home(home))) as client:
            page = client.get("/members")
            assert page.status_code == 200
            assert "lab-rpc" in page.text and founder.address in page.text
            assert other.address in page.text  # no name registered: shown by address
            assert client.get("/tasks").status_code == 200
        # read-only: no index file, ledger folder or anything else was added to the home
        assert sorted(p.name for p in home.iterdir()) == before
