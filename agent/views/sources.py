"""Where views get their subscriptions from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from google.protobuf.message import Message

from agent.errors import Unavailable
from agent.rpc.methods import MethodSpec, method_spec
from agent.views.view import Source
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["SUBSCRIBE", "StreamClient", "client_source"]

SUBSCRIBE: MethodSpec = method_spec("/consul.subscribe.v1.SubscribeService/Subscribe")


class StreamClient(Protocol):
    """A client agent's ``Client``: one stream on the router's first server."""

    def stream(
        self, spec: MethodSpec, request: Message, *, timeout: float | None = None
    ) -> AsyncIterator[Message]: ...


def client_source(client: StreamClient) -> Source:
    """Subscriptions through ``client`` (router, pool, failover on transport errors)."""

    async def source(request: spb.SubscribeRequest) -> AsyncIterator[spb.SubscribeResponse]:
        async for message in client.stream(SUBSCRIBE, request):
            if not isinstance(message, spb.SubscribeResponse):
                raise Unavailable(f"unexpected subscription message {type(message).__name__}")
            yield message

    return source
