"""Publisher: one feed, one re-read per change, fan-out by key, resume, clean detach.

Runs over a real in-process MemoryStore and the real state layer (no network).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.errors import InvalidArgument
from agent.state.catalog import Catalog
from agent.state.kv import KVState
from agent.store.memory import MemoryStore
from agent.stream import Publisher, SubscribeEndpoint
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

T = 5.0


class Setup:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.kv = KVState(store)
        self.publisher = Publisher(store, self.catalog, self.kv, heartbeat=0.2)

    async def register(self, node: str, service: str, port: int = 80) -> int:
        return await self.catalog.register(
            pb.Node(name=node, address="10.0.0.1"),
            pb.Service(name=service, id=f"{service}-{node}", port=port),
        )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with MemoryStore() as store:
        s = Setup(store)
        await s.publisher.start()
        yield s
        await s.publisher.aclose()


def req(topic: int, key: str = "", index: int = 0) -> spb.SubscribeRequest:
    return spb.SubscribeRequest(topic=topic, key=key, index=index)  # type: ignore[arg-type]


async def next_kind(
    stream: AsyncIterator[spb.SubscribeResponse], skip_heartbeats: bool = True
) -> spb.SubscribeResponse:
    async with asyncio.timeout(T):
        while True:
            msg = await anext(stream)
            if skip_heartbeats and msg.WhichOneof("message") == "heartbeat":
                continue
            return msg


async def test_snapshot_then_changes_of_that_key_only(setup: Setup) -> None:
    await setup.register("n1", "web")
    stream = setup.publisher.subscribe(req(spb.TOPIC_SERVICE_HEALTH, "web"))
    first = await next_kind(stream)
    assert first.WhichOneof("message") == "snapshot"
    assert [e.service.id for e in first.snapshot.events[0].service_health.entries] == ["web-n1"]
    end = await next_kind(stream)
    assert end.WhichOneof("message") == "end_of_snapshot"
    assert end.end_of_snapshot.index == first.snapshot.index
    await setup.register("n1", "db")  # another service: nothing for web
    index = await setup.register("n2", "web")
    change = await next_kind(stream)
    assert change.WhichOneof("message") == "events"
    assert change.events.index == index
    ids = [e.service.id for e in change.events.events[0].service_health.entries]
    assert ids == ["web-n1", "web-n2"]
    assert change.position >= 0
    await stream.aclose()  # type: ignore[attr-defined]


async def test_one_read_per_change_whatever_the_subscribers(setup: Setup) -> None:
    await setup.register("n1", "web")
    streams = [setup.publisher.subscribe(req(spb.TOPIC_SERVICE_HEALTH, "web")) for _ in range(5)]
    for s in streams:
        await next_kind(s)
        await next_kind(s)
    before = setup.publisher.stats.events
    await setup.register("n2", "web")
    for s in streams:
        assert (await next_kind(s)).WhichOneof("message") == "events"
    assert setup.publisher.stats.events == before + 1
    assert setup.publisher.slots() == {next(iter(setup.publisher.slots())): 5}
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]


async def test_a_closed_subscription_leaves_nothing_behind(setup: Setup) -> None:
    stream = setup.publisher.subscribe(req(spb.TOPIC_KV_PREFIX, "app/"))
    await next_kind(stream)
    assert setup.publisher.stats.subscribers == 1
    assert setup.publisher._kv_prefixes == {"app/": 1}
    await stream.aclose()  # type: ignore[attr-defined]
    assert setup.publisher.stats.subscribers == 0
    assert setup.publisher.slots() == {}
    assert setup.publisher._kv_prefixes == {}


async def test_a_cancelled_handler_detaches(setup: Setup) -> None:
    """What grpc does when a client goes away: the handler task is cancelled."""
    endpoint = SubscribeEndpoint(setup.publisher, "dc1")
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in endpoint.Subscribe(req(spb.TOPIC_CATALOG_NODES)):
            got.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(T):
        await got.wait()
    assert setup.publisher.stats.subscribers == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert setup.publisher.stats.subscribers == 0
    assert setup.publisher.slots() == {}


async def test_resume_at_the_current_index_sends_no_snapshot(setup: Setup) -> None:
    index = await setup.register("n1", "web")
    stream = setup.publisher.subscribe(req(spb.TOPIC_SERVICE_HEALTH, "web", index))
    first = await next_kind(stream, skip_heartbeats=False)
    assert first.WhichOneof("message") == "heartbeat"
    newer = await setup.register("n2", "web")
    change = await next_kind(stream)
    assert change.WhichOneof("message") == "events" and change.events.index == newer
    await stream.aclose()  # type: ignore[attr-defined]


async def test_resume_from_an_older_index_sends_the_newer_value(setup: Setup) -> None:
    old = await setup.register("n1", "web")
    newer = await setup.register("n2", "web")
    stream = setup.publisher.subscribe(req(spb.TOPIC_SERVICE_HEALTH, "web", old))
    assert (await next_kind(stream, skip_heartbeats=False)).WhichOneof("message") == "heartbeat"
    change = await next_kind(stream)
    assert change.WhichOneof("message") == "events" and change.events.index == newer
    await stream.aclose()  # type: ignore[attr-defined]


async def test_resume_from_the_future_gets_a_new_snapshot(setup: Setup) -> None:
    """A server behind its subscriber (or a reset store) cannot resume."""
    index = await setup.register("n1", "web")
    stream = setup.publisher.subscribe(req(spb.TOPIC_SERVICE_HEALTH, "web", index + 100))
    kinds = [(await next_kind(stream)).WhichOneof("message") for _ in range(3)]
    assert kinds == ["new_snapshot_to_follow", "snapshot", "end_of_snapshot"]
    assert setup.publisher.stats.new_snapshots == 1
    await stream.aclose()  # type: ignore[attr-defined]


async def test_kv_prefix_and_key(setup: Setup) -> None:
    prefix = setup.publisher.subscribe(req(spb.TOPIC_KV_PREFIX, "app/"))
    key = setup.publisher.subscribe(req(spb.TOPIC_KV_KEY, "app/a"))
    for s in (prefix, key):
        await next_kind(s)
        await next_kind(s)
    await setup.kv.put("other/x", b"1")
    _, index = await setup.kv.put("app/a", b"1")
    for s in (prefix, key):
        change = await next_kind(s)
        assert change.events.index == index
        assert [p.key for p in change.events.events[0].kv.pairs] == ["app/a"]
    deleted = await setup.kv.delete("app/a")
    for s in (prefix, key):
        change = await next_kind(s)
        assert change.events.index == deleted and not change.events.events[0].kv.pairs
        await s.aclose()  # type: ignore[attr-defined]


async def test_heartbeats_while_quiet(setup: Setup) -> None:
    stream = setup.publisher.subscribe(req(spb.TOPIC_CATALOG_SERVICES))
    await next_kind(stream)
    await next_kind(stream)
    beat = await next_kind(stream, skip_heartbeats=False)
    assert beat.WhichOneof("message") == "heartbeat"
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("topic", "key"),
    [(spb.TOPIC_UNSPECIFIED, ""), (spb.TOPIC_SERVICE_HEALTH, ""), (spb.TOPIC_CATALOG_NODES, "x")],
)
async def test_bad_requests_are_invalid_argument(setup: Setup, topic: int, key: str) -> None:
    with pytest.raises(InvalidArgument):
        await anext(setup.publisher.subscribe(req(topic, key)))
    assert setup.publisher.stats.subscribers == 0


async def test_closing_ends_every_subscription(setup: Setup) -> None:
    stream = setup.publisher.subscribe(req(spb.TOPIC_CATALOG_NODES))
    await next_kind(stream)
    await next_kind(stream)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await setup.publisher.aclose()
    with pytest.raises(Exception, match="shutting down"):
        async with asyncio.timeout(T):
            await waiting
    assert setup.publisher.stats.subscribers == 0
