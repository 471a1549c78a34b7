"""The cheapest HTTP → gRPC front Python can be: the floor under the gateway's cost in the benchmark.

A raw ASGI app on the same uvicorn (httptools + uvloop) as the gateway, doing only what every front
must: read the body, make one ``grpc.aio`` ``Classify`` call, write the probabilities as JSON. No
routing, content negotiation, request ids, deadlines, metrics, logging or error mapping. Whatever it
costs, no Python gateway on this stack can cost less; :mod:`bench.gateway.run` measures it next to the
real gateway so the two can be told apart::

    BARE_FRONT_TARGET=127.0.0.1:8500 BARE_FRONT_MODEL=bench \\
        python -m uvicorn bench.gateway.bare_front:app --port 8081 --no-access-log
"""

from __future__ import annotations

import json
import os
from typing import Any

from grpc import aio

from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

_state: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                channel = aio.insecure_channel(os.environ["BARE_FRONT_TARGET"])
                _state["channel"] = channel
                _state["stub"] = classifier_pb2_grpc.ClassifierStub(channel)
                _state["spec"] = common_pb2.ModelSpec(name=os.environ["BARE_FRONT_MODEL"])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _state["channel"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = classifier_pb2.ClassifyRequest(model=_state["spec"], images=[body])
    response = await _state["stub"].Classify(request, timeout=30)
    out = json.dumps(list(response.results[0].probabilities)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
