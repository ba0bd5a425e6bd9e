"""ViewInvoker: which reads views answer, cached answers and bytes, read-your-writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf.message import Message

from agent.errors import InvalidArgument
from agent.rpc.methods import MethodSpec, method_spec
from agent.views import ViewInvoker, ViewStore
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

HEALTH = method_spec("/consul.health.v1.HealthService/ServiceHealth")
STATE = method_spec("/consul.health.v1.HealthService/ChecksInState")
PUT = method_spec("/consul.kv.v1.KVService/Put")


class FauxInner:
    """The server side: records every call, answers with empty responses."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        self.calls.append(spec.name)
        if spec is PUT:
            return kpb.PutResponse(meta=qpb.WriteMeta(index=50), applied=True)
        return spec.response_type()


def entry(sid: str, tags: list[str], status: int) -> pb.ServiceEntry:
    return pb.ServiceEntry(
        node=pb.Node(name=f"n-{sid}"),
        service=pb.Service(id=sid, name="web", tags=tags),
        checks=[pb.HealthCheck(check_id=f"c-{sid}", status=status)],  # type: ignore[arg-type]
    )


class OneValue:
    """Every subscription: a snapshot of two web instances at index 10, position 10."""

    def __init__(self) -> None:
        self.opened = 0
        self.position = 10
        self.queue: asyncio.Queue[spb.SubscribeResponse] = asyncio.Queue()

    async def __call__(self, request: spb.SubscribeRequest) -> AsyncIterator[spb.SubscribeResponse]:
        self.opened += 1
        value = spb.Event(
            index=10,
            service_health=spb.ServiceHealthPayload(
                entries=[
                    entry("a", ["v1"], pb.HEALTH_STATUS_PASSING),
                    entry("b", ["v2"], pb.HEALTH_STATUS_CRITICAL),
                ]
            ),
        )
        yield spb.SubscribeResponse(
            snapshot=spb.EventBatch(index=10, events=[value]), known_leader=True, position=10
        )
        yield spb.SubscribeResponse(
            end_of_snapshot=spb.EndOfSnapshot(index=10), known_leader=True, position=10
        )
        while True:
            yield await self.queue.get()


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ViewInvoker, FauxInner, OneValue]]:
    source, inner = OneValue(), FauxInner()
    async with ViewStore(source, hold_timeout=7.0) as store:
        yield ViewInvoker(inner, store, "dc1"), inner, source


async def test_reads_come_from_one_view_with_the_servers_narrowing(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    invoker, inner, source = setup
    everything = await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
    assert isinstance(everything, hpb.ServiceHealthResponse)
    assert [e.service.id for e in everything.entries] == ["a", "b"]
    assert everything.meta.index == 10 and everything.meta.known_leader
    passing = await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web", passing_only=True))
    tagged = await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web", tags=["V2"]))
    filtered = hpb.ServiceHealthRequest(service="web")
    filtered.options.filter = 'Service.ID == "b"'
    by_filter = await invoker.rpc(HEALTH, filtered)
    assert [e.service.id for e in passing.entries] == ["a"]  # type: ignore[attr-defined]
    assert [e.service.id for e in tagged.entries] == ["b"]  # type: ignore[attr-defined]
    assert [e.service.id for e in by_filter.entries] == ["b"]  # type: ignore[attr-defined]
    assert inner.calls == [] and source.opened == 1 and len(invoker.views) == 1


async def test_a_repeated_read_is_the_same_answer_and_bytes(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    invoker, _, _ = setup
    req = hpb.ServiceHealthRequest(service="web")
    first = await invoker.rpc(HEALTH, req)
    second = await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
    assert second is first
    data = invoker.serialize(first)
    assert data == first.SerializeToString()
    assert invoker.serialize(second) is data  # serialized once
    assert invoker.views.stats.hits == 1 and invoker.views.stats.misses == 1
    other = hpb.ServiceHealthResponse()
    assert invoker.serialize(other) == b""  # not an answer: its own bytes


async def test_consistent_uncovered_and_writes_go_to_the_server(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    invoker, inner, source = setup
    consistent = hpb.ServiceHealthRequest(service="web")
    consistent.options.consistency = qpb.CONSISTENCY_CONSISTENT
    await invoker.rpc(HEALTH, consistent)
    await invoker.rpc(STATE, hpb.ChecksInStateRequest())
    assert inner.calls == ["ServiceHealth", "ChecksInState"] and source.opened == 0


async def test_after_a_local_write_reads_go_to_the_server_until_the_view_passes_it(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    invoker, inner, source = setup
    await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
    await invoker.rpc(PUT, kpb.PutRequest(key="k", value=b"v"))  # answered at index 50
    await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
    assert inner.calls == ["Put", "ServiceHealth"] and invoker.views.stats.delegated == 1
    source.queue.put_nowait(spb.SubscribeResponse(heartbeat=spb.Heartbeat(index=10), position=50))
    view = invoker.views.views()[0]
    async with asyncio.timeout(5):
        while view.position < 50:
            await asyncio.sleep(0.01)
    await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
    assert inner.calls == ["Put", "ServiceHealth"]


async def test_bad_requests_are_refused_before_any_view(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    invoker, inner, _ = setup
    with pytest.raises(InvalidArgument):
        await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service=""))
    bad = hpb.ServiceHealthRequest(service="web")
    bad.options.consistency = 7  # type: ignore[assignment]
    with pytest.raises(InvalidArgument):
        await invoker.rpc(HEALTH, bad)
    assert len(invoker.views) == 0 and inner.calls == []


async def test_current_only_while_the_view_is_unchanged_and_open(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    """What the HTTP front cache relies on; an evicted view must never count as current."""
    invoker, _, source = setup
    answer = await invoker.rendered(
        HEALTH, hpb.ServiceHealthRequest(service="web"), "json", lambda m: b"x"
    )
    assert answer.view is not None
    assert invoker.current(answer.view, answer.version)
    source.queue.put_nowait(
        spb.SubscribeResponse(
            events=spb.EventBatch(index=11, events=[spb.Event(index=11)]), known_leader=True
        )
    )
    async with asyncio.timeout(5):
        while answer.view.index < 11:
            await asyncio.sleep(0.01)
    assert not invoker.current(answer.view, answer.version)
    again = await invoker.rendered(
        HEALTH, hpb.ServiceHealthRequest(service="web"), "json", lambda m: b"y"
    )
    assert again.view is answer.view and invoker.current(again.view, again.version)
    invoker.views.reap()  # not idle: kept
    assert invoker.current(again.view, again.version)
    invoker.views.idle_timeout = -1
    invoker.views.reap()
    assert not invoker.current(again.view, again.version)


async def test_with_acls_on_every_read_goes_to_the_servers() -> None:
    """Views are not filtered per token yet: with ACLs enabled a view answer
    would show every token everything, so the agent sends reads to the
    servers, which filter them (``enabled=False``)."""
    source, inner = OneValue(), FauxInner()
    async with ViewStore(source, hold_timeout=7.0) as store:
        invoker = ViewInvoker(inner, store, "dc1", enabled=False)
        await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
        await invoker.rpc(HEALTH, hpb.ServiceHealthRequest(service="web"))
        assert inner.calls == ["ServiceHealth", "ServiceHealth"] and source.opened == 0


async def test_servers_with_acls_check_each_subscription() -> None:
    from agent.errors import PermissionDenied
    from agent.stream.endpoint import GatedSubscribe

    async def refuse(request: spb.SubscribeRequest) -> None:
        raise PermissionDenied("Permission denied: token lacks permission 'key:read'")

    gated = GatedSubscribe(None, refuse)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied, match="key:read"):
        async for _ in gated.Subscribe(spb.SubscribeRequest()):
            pass


async def test_kv_keys_go_to_the_server_without_a_view(
    setup: tuple[ViewInvoker, FauxInner, OneValue],
) -> None:
    """Issue 16: ``?keys`` at the root made a client agent subscribe to every KV
    value, and each KV write re-sent all of it (15 MB at 100,000 keys)."""
    invoker, inner, source = setup
    keys_spec = method_spec("/consul.kv.v1.KVService/Keys")
    await invoker.rpc(keys_spec, kpb.KeysRequest(prefix="", separator="/"))
    blocking = kpb.KeysRequest(prefix="")
    blocking.options.min_index = 5
    await invoker.rpc(keys_spec, blocking)
    assert inner.calls == ["Keys", "Keys"]
    assert source.opened == 0 and len(invoker.views) == 0
