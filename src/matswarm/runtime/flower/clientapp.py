"""The Flower ClientApp: a thin shim, the only code a coordinator's run executes on an org.

Each message (``query.hello``, ``query.join``, ``train.local``,
``query.finish``) is forwarded unchanged to the org's long-lived node process
(:class:`~matswarm.runtime.flower.node.OrgService`) over the authenticated local channel and the
node's answer is sent back. The shim holds no state and imports neither torch nor the data, so
the per-message process a SuperNode spawns stays cheap. Where the node is: the SuperNode's
``--node-config "matswarm-endpoint='/path/endpoint.json'"`` (written by ``matswarm node start``),
or ``MATSWARM_NODE_ENDPOINT``.
"""

from __future__ import annotations

import os

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from matswarm.runtime.flower.channel import Endpoint, call
from matswarm.runtime.flower.codec import from_recorddict, to_recorddict

ENDPOINT_KEY = "matswarm-endpoint"

app = ClientApp()


def endpoint_of(context: Context) -> Endpoint:
    path = context.node_config.get(ENDPOINT_KEY) or os.environ.get("MATSWARM_NODE_ENDPOINT")
    if not path:
        raise RuntimeError(
            f"this SuperNode has no {ENDPOINT_KEY!r} node-config entry; start it with "
            "`matswarm node start`"
        )
    return Endpoint.read(str(path))


def forward(message: Message, context: Context) -> Message:
    kind = message.metadata.message_type.partition(".")[2] or message.metadata.message_type
    if kind == "local":
        kind = "train"
    reply = call(endpoint_of(context), kind, from_recorddict(message.content))
    return Message(to_recorddict(reply), reply_to=message)


for _name in (
    "hello",
    "join",
    "aggregate",
    "finish",
    "secagg_keys",
    "secagg_shares",
    "secagg_reveal",
):
    app.query(_name)(forward)
app.train("local")(forward)
