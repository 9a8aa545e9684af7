"""``matswarm dashboard``: serve the read-only web dashboard of a home (uvicorn)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from matswarm.cli._output import console, fail
from matswarm.cli.lifecycle import HomeOpt

TOKEN_ENV = "MATSWARM_DASHBOARD_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    home: HomeOpt = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback requires a token.")
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            help=f"Access token (default ${TOKEN_ENV}; generated when binding beyond loopback)."
        ),
    ] = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            help="A public labelled table in the task's schema: per-round MSE chart and parity "
            "plot of the stored models on it."
        ),
    ] = None,
    verify_as: Annotated[
        str | None,
        typer.Option(
            help="A participant or auditor in this home whose key lets Verify decrypt updates."
        ),
    ] = None,
    poll_ms: Annotated[int, typer.Option(help="Live-update period of the rounds (ms).")] = 2000,
) -> None:
    """Serve the consortium's read-only web dashboard: members, tasks, rounds (live), votes and
    commitments with transaction ids, rejections, reports, contributions, final models, charts,
    and a Verify button (the same re-derivation as `matswarm verify`)."""
    try:
        import uvicorn

        from matswarm.web.app import create_app
    except ImportError as exc:
        fail(f"the dashboard needs the web extra: pip install 'matswarm[web]' ({exc})")
    from matswarm.cli.lifecycle import _errors, _passphrase
    from matswarm.runtime.local import Home

    token = token or os.environ.get(TOKEN_ENV) or None
    generated = False
    if token is None and not is_loopback(host):
        token, generated = secrets.token_urlsafe(24), True
    h = Home(home)
    try:
        identity = h.identity(verify_as, _passphrase(verify_as)) if verify_as else None
        app = create_app(
            h, token=token, poll_ms=poll_ms, eval_data=eval_data, verify_identity=identity
        )
    except _errors() as exc:
        fail(str(exc))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/tasks"
    console.print(f"matswarm dashboard of {h.path} (read-only) at {url}")
    if not is_loopback(host):
        console.print(
            "[yellow]plain HTTP beyond this machine: the token travels in clear; put the "
            "dashboard behind a TLS reverse proxy[/]"
        )
    if token is not None:
        console.print(
            f"access token{' (generated)' if generated else ''}: {token}\nopen {url}?token={token}"
        )
    console.print(
        "[dim]The embedded chain is a single-process simulator without consensus; this page "
        "shows what it recorded.[/]"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
