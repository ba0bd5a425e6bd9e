"""View and ViewStore rules, with a hand-driven FauxSource and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.errors import NoServers, Unavailable
from agent.views import View, ViewKey, ViewStore
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

T = 5.0
KEY = ViewKey("dc1", spb.TOPIC_SERVICE_HEALTH, "web")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FauxSource:
    """Each subscription reads from its own queue; ``None`` ends it, an exception breaks it."""

    def __init__(self) -> None:
        self.requests: list[spb.SubscribeRequest] = []
        self.streams: asyncio.Queue[asyncio.Queue[object]] = asyncio.Queue()
        self.refuse: Exception | None = None

    async def __call__(self, request: spb.SubscribeRequest) -> AsyncIterator[spb.SubscribeResponse]:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        queue: asyncio.Queue[object] = asyncio.Queue()
        await self.streams.put(queue)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, spb.SubscribeResponse)
            yield item

    async def next_stream(self) -> asyncio.Queue[object]:
        async with asyncio.timeout(T):
            return await self.streams.get()


def value(index: int, *ids: str) -> spb.Event:
    entries = [pb.ServiceEntry(service=pb.Service(id=i, name="web")) for i in ids]
    return spb.Event(index=index, service_health=spb.ServiceHealthPayload(entries=entries))


def snapshot(index: int, *ids: str) -> list[spb.SubscribeResponse]:
    return [
        spb.SubscribeResponse(
            snapshot=spb.EventBatch(index=index, events=[value(index, *ids)]), known_leader=True
        ),
        spb.SubscribeResponse(end_of_snapshot=spb.EndOfSnapshot(index=index), known_leader=True),
    ]


def change(index: int, *ids: str) -> spb.SubscribeResponse:
    return spb.SubscribeResponse(
        events=spb.EventBatch(index=index, events=[value(index, *ids)]), known_leader=True
    )


async def feed(queue: asyncio.Queue[object], *messages: object) -> None:
    for m in messages:
        await queue.put(m)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def running() -> AsyncIterator[tuple[View, FauxSource, Clock]]:
    source, clock = FauxSource(), Clock()
    view = View(KEY, source, hold_timeout=7.0, clock=clock)
    task = asyncio.create_task(view.run())
    yield view, source, clock
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_first_read_waits_for_the_snapshot(running: tuple[View, FauxSource, Clock]) -> None:
    view, source, _ = running
    stream = await source.next_stream()
    reader = asyncio.ensure_future(view.usable())
    await settle()
    assert not reader.done()
    await feed(stream, *snapshot(10, "a"))
    async with asyncio.timeout(T):
        await reader
    assert view.index == 10 and view.known_leader and view.connected
    assert [e.service.id for e in view.value.service_health.entries] == ["a"]  # type: ignore[union-attr]


async def test_blocking_reader_wakes_on_change(running: tuple[View, FauxSource, Clock]) -> None:
    view, source, _ = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    waiter = asyncio.ensure_future(view.wait_index(10, 60))
    await settle()
    assert not waiter.done()
    await feed(stream, change(12, "a", "b"))
    async with asyncio.timeout(T):
        await waiter
    assert view.index == 12


async def test_resubscribes_with_its_index_and_resumes_without_waking(
    running: tuple[View, FauxSource, Clock],
) -> None:
    view, source, clock = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    version = view.version
    await feed(stream, Unavailable("connection reset"))
    second = await source.next_stream()
    assert source.requests[-1].index == 10
    assert not view.connected
    clock.now += 2
    assert view.last_contact() == pytest.approx(2.0)
    waiter = asyncio.ensure_future(view.wait_index(10, 60))
    # The new server resumes: a heartbeat, and the same value again (old news).
    await feed(second, spb.SubscribeResponse(heartbeat=spb.Heartbeat(index=10), known_leader=True))
    await feed(second, change(10, "a"))
    await settle()
    assert view.connected and view.last_contact() == 0.0
    assert view.version == version and not waiter.done()
    await feed(second, change(11, "a", "b"))
    async with asyncio.timeout(T):
        await waiter
    waiter.result()


async def test_new_snapshot_with_the_same_data_wakes_nobody(
    running: tuple[View, FauxSource, Clock],
) -> None:
    view, source, _ = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    version = view.version
    await feed(
        stream,
        spb.SubscribeResponse(new_snapshot_to_follow=spb.NewSnapshotToFollow(), known_leader=True),
    )
    await feed(stream, *snapshot(10, "a"))
    await settle()
    assert view.version == version and view.stats.resets == 1


async def test_index_never_goes_backwards(running: tuple[View, FauxSource, Clock]) -> None:
    """A reset store answers a lower index with other data: readers still see it, index moves up."""
    view, source, _ = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    await feed(
        stream,
        spb.SubscribeResponse(new_snapshot_to_follow=spb.NewSnapshotToFollow(), known_leader=True),
    )
    await feed(stream, *snapshot(3, "b"))
    await settle()
    assert view.index == 11
    assert [e.service.id for e in view.value.service_health.entries] == ["b"]  # type: ignore[union-attr]


async def test_down_view_answers_until_the_hold_timeout(
    running: tuple[View, FauxSource, Clock],
) -> None:
    view, source, clock = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    source.refuse = Unavailable("rpc error making call to s1: connection refused")
    await feed(stream, Unavailable("connection reset"))
    async with asyncio.timeout(T):
        while len(source.requests) < 2:  # the resubscription was refused too
            await asyncio.sleep(0.01)
    await settle()
    clock.now += 6.9
    await view.usable()  # still within the hold: last data, growing LastContact
    assert view.last_contact() == pytest.approx(6.9)
    clock.now += 0.2
    with pytest.raises(Unavailable, match="connection refused"):
        await view.usable()


async def test_no_servers_fails_the_first_read_at_once() -> None:
    source, clock = FauxSource(), Clock()
    source.refuse = NoServers()
    view = View(KEY, source, hold_timeout=7.0, clock=clock)
    task = asyncio.create_task(view.run())
    try:
        with pytest.raises(NoServers):
            async with asyncio.timeout(T):
                await view.usable()
    finally:
        task.cancel()


async def test_answers_are_cached_per_version(running: tuple[View, FauxSource, Clock]) -> None:
    view, source, _ = running
    stream = await source.next_stream()
    await feed(stream, *snapshot(10, "a"))
    await settle()
    kept = view.keep_answer(b"v", spb.Event())
    assert view.answer(b"v") is kept
    await feed(stream, change(11, "a", "b"))
    await settle()
    assert view.answer(b"v") is None


async def test_store_shares_views_and_expires_idle_ones() -> None:
    source, clock = FauxSource(), Clock()
    async with ViewStore(
        source, hold_timeout=7.0, idle_timeout=60, max_views=2, clock=clock
    ) as store:
        a = store.view(KEY)
        assert store.view(KEY) is a and len(store) == 1
        await source.next_stream()
        other = ViewKey("dc1", spb.TOPIC_SERVICE_HEALTH, "db")
        store.view(other)
        store.view(ViewKey("dc1", spb.TOPIC_SERVICE_HEALTH, "api"))
        assert len(store) == 2 and store.stats.evicted == 1  # the least recently read went
        assert KEY not in {v.key for v in store.views()}
        clock.now += 61
        assert store.reap() == 2 and len(store) == 0


def test_variant_ignores_the_blocking_options_only() -> None:
    from agent.views.invoker import _variant
    from generated.consul.health.v1 import health_pb2 as hpb

    path = "/consul.health.v1.HealthService/ServiceHealth"
    plain = hpb.ServiceHealthRequest(service="web", passing_only=True)
    blocking = hpb.ServiceHealthRequest(service="web", passing_only=True)
    blocking.options.min_index = 42
    blocking.options.max_wait.seconds = 30
    assert _variant(path, plain) == _variant(path, blocking)
    assert blocking.options.min_index == 42  # the caller's request is left alone
    other = hpb.ServiceHealthRequest(service="web", tags=["v1"])
    assert _variant(path, other) != _variant(path, plain)


async def test_a_view_with_a_blocked_reader_is_not_reaped() -> None:
    """Regression: a 10-minute blocking read outlived the 10-minute idle timeout."""
    source, clock = FauxSource(), Clock()
    async with ViewStore(source, hold_timeout=7.0, idle_timeout=60, clock=clock) as store:
        view = store.view(KEY)
        stream = await source.next_stream()
        await feed(stream, *snapshot(10, "a"))
        await view.usable()
        waiter = asyncio.ensure_future(view.wait_index(10, 600))
        await settle()
        clock.now += 61
        assert store.reap() == 0 and view.waiting == 1
        await feed(stream, change(11, "a", "b"))
        async with asyncio.timeout(T):
            await waiter
        assert view.waiting == 0 and store.reap() == 0  # the wait counted as a read
        clock.now += 61
        assert store.reap() == 1
