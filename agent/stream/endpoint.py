"""``SubscribeService`` on servers: local subscriptions, other datacenters forwarded.

A request naming another datacenter is relayed, message by message, from a
server of that datacenter (the WAN router's first server for it; the stream
itself goes through ``Client.stream`` on that datacenter's Manager, which
rotates a failed server away). The subscriber resubscribes on failure, as
for a local one, so the relay does no retry of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from agent.client import Client
from agent.errors import (
    NoPathToDatacenter,
    NoServers,
    RemoteDCUnreachable,
    Unavailable,
)
from agent.pool import ConnPool
from agent.router import Router
from agent.rpc.methods import MethodSpec, method_spec
from agent.stream.publisher import Publisher
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = [
    "SUBSCRIBE",
    "GatedSubscribe",
    "StreamForwarder",
    "SubscribeEndpoint",
    "WanStreamForwarder",
]

SUBSCRIBE: MethodSpec = method_spec("/consul.subscribe.v1.SubscribeService/Subscribe")


class StreamForwarder(Protocol):
    """Opens a subscription on a server of another datacenter."""

    def __call__(
        self, request: spb.SubscribeRequest, datacenter: str
    ) -> AsyncIterator[spb.SubscribeResponse]: ...


class WanStreamForwarder:
    """Relays a subscription from another datacenter's servers (see the module docstring)."""

    def __init__(self, router: Router, pool: ConnPool) -> None:
        self.router = router
        self.pool = pool
        self._clients: dict[str, Client] = {}

    async def __call__(
        self, request: spb.SubscribeRequest, datacenter: str
    ) -> AsyncIterator[spb.SubscribeResponse]:
        manager, _ = self.router.find_route(datacenter)
        client = self._clients.get(datacenter)
        if client is None:
            client = self._clients[datacenter] = Client(manager, self.pool)
        try:
            async for message in client.stream(SUBSCRIBE, request):
                assert isinstance(message, spb.SubscribeResponse)
                yield message
        except NoServers as exc:
            raise RemoteDCUnreachable() from exc
        except Unavailable as exc:
            if type(exc) is Unavailable:  # a transport failure there, not an answer
                raise RemoteDCUnreachable(
                    f"Remote DC has no server currently reachable: {exc.message}"
                ) from exc
            raise


class SubscribeEndpoint:
    """The ``SubscribeService`` of one server."""

    def __init__(
        self, publisher: Publisher, datacenter: str, forward: StreamForwarder | None = None
    ) -> None:
        self.publisher = publisher
        self.datacenter = datacenter
        self.forward = forward

    async def Subscribe(
        self, request: spb.SubscribeRequest
    ) -> AsyncIterator[spb.SubscribeResponse]:
        dc = request.datacenter
        if dc and dc != self.datacenter:
            if self.forward is None:
                raise NoPathToDatacenter(f"No path to datacenter {dc!r}")
            async for message in self.forward(request, dc):
                yield message
            return
        async for message in self.publisher.subscribe(request):
            yield message


class GatedSubscribe:
    """SubscribeService with ACLs on: ``authorize`` may refuse a subscription
    (``agent.acl.enforce.authorize_subscribe``: the token must be able to read
    the whole topic key, since agents filter their views per caller at read
    time), else ``inner`` serves it."""

    def __init__(
        self,
        inner: SubscribeEndpoint,
        authorize: Callable[[spb.SubscribeRequest], Awaitable[None]],
    ) -> None:
        self.inner = inner
        self.authorize = authorize

    async def Subscribe(
        self, request: spb.SubscribeRequest
    ) -> AsyncIterator[spb.SubscribeResponse]:
        await self.authorize(request)
        async for message in self.inner.Subscribe(request):
            yield message
