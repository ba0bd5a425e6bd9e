"""Client.rpc: order of operations, failover, retry safety, hold timeout."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from agent.client import Client
from agent.errors import (
    CASConflict,
    InvalidArgument,
    NoLeader,
    NoServers,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
)
from agent.pool import ConnectFailed
from agent.router import Server
from agent.rpc import MethodSpec, method_spec
from generated.consul.catalog.v1 import catalog_pb2
from generated.consul.kv.v1 import kv_pb2
from generated.consul.membership.v1 import membership_pb2

LIST_NODES = method_spec("/consul.catalog.v1.CatalogService/ListNodes")
KV_PUT = method_spec("/consul.kv.v1.KVService/Put")
WATCH = method_spec("/consul.membership.v1.MembershipService/WatchMembers")

S1 = Server("s1", "10.0.0.1:8300", "dc1")
S2 = Server("s2", "10.0.0.2:8300", "dc1")
S3 = Server("s3", "10.0.0.3:8300", "dc1")


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def transport_error() -> grpc.aio.AioRpcError:
    return rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")


class FakeRouter:
    """Rotates like Manager.notify_failed_server; records what happened."""

    def __init__(self, *servers: Server) -> None:
        self.servers = list(servers)
        self.notified: list[str] = []
        self.finds = 0
        self.log: list[str] | None = None

    def find_server(self) -> Server | None:
        self.finds += 1
        if self.log is not None:
            self.log.append("find_server")
        return self.servers[0] if self.servers else None

    def notify_failed_server(self, server: Server) -> None:
        self.notified.append(server.name)
        if len(self.servers) > 1 and self.servers[0].name == server.name:
            self.servers.append(self.servers.pop(0))


class FakePool:
    """Answers per address from a script: a message, or an exception to raise."""

    def __init__(self, script: dict[str, list[Any]] | None = None, default: Any = None) -> None:
        self.script = script or {}
        self.default = default
        self.calls: list[tuple[str, str, float]] = []
        self.failed: list[str] = []
        self.log: list[str] | None = None

    async def call(self, address: str, spec: MethodSpec, request: Any, timeout: float) -> Any:
        self.calls.append((address, spec.path, timeout))
        if self.log is not None:
            self.log.append("call")
        queue = self.script.get(address)
        outcome = queue.pop(0) if queue else self.default
        if outcome is None:
            outcome = spec.response_type()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def stream(
        self, address: str, spec: MethodSpec, request: Any, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        self.calls.append((address, spec.path, timeout or 0.0))
        for outcome in self.script.get(address, []):
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome

    def mark_failed(self, address: str) -> None:
        self.failed.append(address)


class FakeTime:
    """A clock that only moves when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(router: FakeRouter, pool: FakePool, t: FakeTime | None = None, **kw: Any) -> Client:
    t = t or FakeTime()
    return Client(router, pool, rng=random.Random(3), clock=t.clock, sleep=t.sleep, **kw)


def read_req() -> catalog_pb2.ListNodesRequest:
    return catalog_pb2.ListNodesRequest()


def write_req() -> kv_pb2.PutRequest:
    return kv_pb2.PutRequest(key="k", value=b"v")


# -- order of operations ------------------------------------------------------


async def test_success_goes_to_first_server() -> None:
    router, pool = FakeRouter(S1, S2), FakePool()
    reply = catalog_pb2.ListNodesResponse()
    reply.meta.index = 7
    pool.script[S1.address] = [reply]
    client = make(router, pool)
    got = await client.rpc(LIST_NODES, read_req())
    assert got == reply
    assert [c[0] for c in pool.calls] == [S1.address]
    assert client.stats.rpc == 1 and client.stats.attempts == 1 and client.stats.retries == 0


async def test_no_servers_raises_without_retry_or_call() -> None:
    router, pool, t = FakeRouter(), FakePool(), FakeTime()
    client = make(router, pool, t)
    with pytest.raises(NoServers, match="No known Consul servers"):
        await client.rpc(LIST_NODES, read_req())
    assert pool.calls == []
    assert router.finds == 1
    assert t.sleeps == []
    assert client.stats.no_servers == 1


async def test_rate_limit_raises_before_any_call_and_without_retry() -> None:
    router, pool, t = FakeRouter(S1, S2), FakePool(), FakeTime()
    client = make(router, pool, t, rate=0.0, burst=1)
    await client.rpc(LIST_NODES, read_req())  # the one token
    with pytest.raises(RateLimited, match="RPC rate limit exceeded"):
        await client.rpc(LIST_NODES, read_req())
    assert len(pool.calls) == 1
    assert t.sleeps == []
    assert client.stats.rate_limited == 1


async def test_find_server_comes_before_the_rate_limit() -> None:
    # No server and no token: the error is NoServers (step 2 before step 3).
    router, pool = FakeRouter(), FakePool()
    client = make(router, pool, rate=0.0, burst=0)
    with pytest.raises(NoServers):
        await client.rpc(LIST_NODES, read_req())
    assert client.stats.rate_limited == 0


async def test_order_is_find_then_call() -> None:
    router, pool = FakeRouter(S1), FakePool()
    log: list[str] = []
    router.log = pool.log = log
    await make(router, pool).rpc(LIST_NODES, read_req())
    assert log == ["find_server", "call"]


async def test_unlimited_rate_by_default() -> None:
    router, pool = FakeRouter(S1), FakePool()
    client = make(router, pool)
    for _ in range(2000):
        await client.rpc(LIST_NODES, read_req())
    assert client.stats.rate_limited == 0


# -- transport failures -------------------------------------------------------


async def test_read_transport_failure_rotates_and_retries_next_server() -> None:
    router, t = FakeRouter(S1, S2, S3), FakeTime()
    pool = FakePool({S1.address: [transport_error()]})
    client = make(router, pool, t)
    await client.rpc(LIST_NODES, read_req())
    assert [c[0] for c in pool.calls] == [S1.address, S2.address]
    assert router.notified == ["s1"]
    assert pool.failed == [S1.address]
    assert router.servers == [S2, S3, S1]
    assert client.stats.failed == 1 and client.stats.retries == 1
    # One jittered wait, from hold/16 = 7/16 s: between half and all of it.
    assert len(t.sleeps) == 1
    assert 0 <= t.sleeps[0] <= 7 / 16  # uniform in [0, hold/16), as Consul


async def test_read_deadline_is_a_transport_failure() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)]})
    await make(router, pool).rpc(LIST_NODES, read_req())
    assert router.notified == ["s1"]
    assert [c[0] for c in pool.calls] == [S1.address, S2.address]


async def test_write_transport_failure_is_not_retried() -> None:
    router, t = FakeRouter(S1, S2), FakeTime()
    pool = FakePool({S1.address: [transport_error()]})
    client = make(router, pool, t)
    with pytest.raises(Unavailable, match="Connection reset by peer"):
        await client.rpc(KV_PUT, write_req())
    assert len(pool.calls) == 1
    assert t.sleeps == []
    # The server is still taken out of first place for the next call.
    assert router.notified == ["s1"]
    assert pool.failed == [S1.address]


async def test_write_deadline_neither_rotates_nor_retries() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)]})
    with pytest.raises(Unavailable, match="timed out"):
        await make(router, pool).rpc(KV_PUT, write_req())
    assert router.notified == []
    assert len(pool.calls) == 1


async def test_write_that_never_connected_is_retried() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [ConnectFailed(S1.address, "transient_failure")]})
    client = make(router, pool)
    await client.rpc(KV_PUT, write_req())
    assert [c[0] for c in pool.calls] == [S1.address, S2.address]
    assert router.notified == ["s1"]
    assert pool.failed == [S1.address]


async def test_all_servers_down_read_gives_up_after_hold() -> None:
    router, t = FakeRouter(S1, S2), FakeTime()
    pool = FakePool(default=transport_error())
    client = make(router, pool, t)
    with pytest.raises(Unavailable):
        await client.rpc(LIST_NODES, read_req())
    assert t.now - 1000.0 <= 7.0 + 1e-9
    assert t.now - 1000.0 >= 7.0 - 1e-9  # it used the whole hold
    assert len(pool.calls) >= 3
    # Waits grow: each at least the previous half-jitter floor of a doubling base.
    assert t.sleeps[1] > t.sleeps[0] / 2


async def test_hold_timeout_counts_from_first_check() -> None:
    # Each call takes 3 s of (fake) time: tries at 0 s, 3.x s, 6.x s; none after 7 s.
    router, t = FakeRouter(S1, S2), FakeTime()

    class SlowPool(FakePool):
        async def call(self, address: str, spec: MethodSpec, request: Any, timeout: float) -> Any:
            t.now += 3.0
            return await super().call(address, spec, request, timeout)

    pool = SlowPool(default=transport_error())
    client = make(router, pool, t)
    with pytest.raises(Unavailable):
        await client.rpc(LIST_NODES, read_req())
    assert len(pool.calls) == 3
    assert client.stats.retries == 2


async def test_zero_hold_timeout_means_no_retry() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [transport_error()]})
    with pytest.raises(Unavailable):
        await make(router, pool, hold_timeout=0.0).rpc(LIST_NODES, read_req())
    assert len(pool.calls) == 1


async def test_blocking_read_gets_longer_deadline_and_hold() -> None:
    router, t = FakeRouter(S1, S2), FakeTime()
    pool = FakePool(default=transport_error())
    client = make(router, pool, t)
    req = catalog_pb2.ListNodesRequest()
    req.options.min_index = 5
    req.options.max_wait.seconds = 32
    with pytest.raises(Unavailable):
        await client.rpc(LIST_NODES, req)
    # deadline: wait + wait/16 + margin
    assert pool.calls[0][2] == pytest.approx(32 + 2 + 5)
    # hold: 7 s + wait + wait/16
    assert t.now - 1000.0 == pytest.approx(7 + 32 + 2)


async def test_plain_call_deadline() -> None:
    router, pool = FakeRouter(S1), FakePool()
    await make(router, pool, call_timeout=4.0).rpc(LIST_NODES, read_req())
    assert pool.calls[0][2] == 4.0


# -- application errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, "Unknown node", NotFound),
        (grpc.StatusCode.INVALID_ARGUMENT, "Missing node name", InvalidArgument),
        (grpc.StatusCode.PERMISSION_DENIED, "Permission denied", PermissionDenied),
        (grpc.StatusCode.ABORTED, "Check-and-set conflict", CASConflict),
    ],
)
async def test_application_error_does_not_rotate_or_retry(
    code: grpc.StatusCode, details: str, expected: type[Exception]
) -> None:
    router, t = FakeRouter(S1, S2), FakeTime()
    pool = FakePool({S1.address: [rpc_error(code, details)]})
    client = make(router, pool, t)
    with pytest.raises(expected, match=details):
        await client.rpc(LIST_NODES, read_req())
    assert router.notified == []
    assert pool.failed == []
    assert router.servers == [S1, S2]
    assert len(pool.calls) == 1
    assert t.sleeps == []


async def test_no_leader_is_retried_without_rotating_even_for_a_write() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [rpc_error(grpc.StatusCode.UNAVAILABLE, "No cluster leader")]})
    client = make(router, pool)
    await client.rpc(KV_PUT, write_req())
    assert [c[0] for c in pool.calls] == [S1.address, S1.address]
    assert router.notified == []
    assert pool.failed == []


async def test_no_leader_past_hold_raises_no_leader() -> None:
    router, t = FakeRouter(S1), FakeTime()
    pool = FakePool(default=rpc_error(grpc.StatusCode.UNAVAILABLE, "No cluster leader"))
    with pytest.raises(NoLeader, match="No cluster leader"):
        await make(router, pool, t).rpc(LIST_NODES, read_req())
    assert t.now - 1000.0 == pytest.approx(7.0)


async def test_server_side_rate_limit_retries_elsewhere() -> None:
    router = FakeRouter(S1, S2)
    busy = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "RPC rate limit exceeded")
    pool = FakePool({S1.address: [busy]})
    client = make(router, pool)
    await client.rpc(KV_PUT, write_req())
    assert [c[0] for c in pool.calls] == [S1.address, S2.address]
    assert pool.failed == []  # the channel is fine
    assert client.stats.rate_limited == 0  # not ours


async def test_remote_dc_unreachable_from_server_is_not_a_transport_failure() -> None:
    router = FakeRouter(S1, S2)
    err = rpc_error(grpc.StatusCode.UNAVAILABLE, "Remote DC has no server currently reachable")
    pool = FakePool({S1.address: [err]})
    with pytest.raises(Unavailable, match="Remote DC"):
        await make(router, pool).rpc(LIST_NODES, read_req())
    assert router.notified == []
    assert len(pool.calls) == 1


async def test_no_servers_during_retry_stops_at_once() -> None:
    router = FakeRouter(S1)

    class Emptying(FakePool):
        async def call(self, address: str, spec: MethodSpec, request: Any, timeout: float) -> Any:
            router.servers.clear()
            raise transport_error()

    with pytest.raises(NoServers):
        await make(router, Emptying()).rpc(LIST_NODES, read_req())


# -- requests --------------------------------------------------------------------


async def test_datacenter_fills_an_empty_request_without_changing_the_callers() -> None:
    router = FakeRouter(S1)
    seen: list[Any] = []

    class Recording(FakePool):
        async def call(self, address: str, spec: MethodSpec, request: Any, timeout: float) -> Any:
            seen.append(request)
            return await super().call(address, spec, request, timeout)

    req = read_req()
    await make(router, Recording()).rpc(LIST_NODES, req, datacenter="dc2")
    assert seen[0].options.datacenter == "dc2"
    assert req.options.datacenter == ""
    named = catalog_pb2.ListNodesRequest()
    named.options.datacenter = "dc3"
    await make(router, Recording()).rpc(LIST_NODES, named, datacenter="dc2")
    assert seen[1].options.datacenter == "dc3"


async def test_wrong_request_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="ListNodesRequest"):
        await make(FakeRouter(S1), FakePool()).rpc(LIST_NODES, write_req())


async def test_streaming_method_through_rpc_is_refused() -> None:
    with pytest.raises(ValueError, match="stream"):
        await make(FakeRouter(S1), FakePool()).rpc(WATCH, membership_pb2.WatchMembersRequest())


# -- stream -----------------------------------------------------------------------


async def test_stream_yields_from_first_server() -> None:
    msgs = [membership_pb2.WatchMembersResponse(), membership_pb2.WatchMembersResponse()]
    router, pool = FakeRouter(S1, S2), FakePool({S1.address: list(msgs)})
    got = [m async for m in make(router, pool).stream(WATCH, membership_pb2.WatchMembersRequest())]
    assert got == msgs


async def test_stream_transport_failure_rotates_and_raises() -> None:
    router = FakeRouter(S1, S2)
    pool = FakePool({S1.address: [membership_pb2.WatchMembersResponse(), transport_error()]})
    client = make(router, pool)
    got = []
    with pytest.raises(Unavailable):
        async for m in client.stream(WATCH, membership_pb2.WatchMembersRequest()):
            got.append(m)
    assert len(got) == 1
    assert router.servers == [S2, S1]
    assert pool.failed == [S1.address]


async def test_stream_without_servers() -> None:
    with pytest.raises(NoServers):
        async for _ in make(FakeRouter(), FakePool()).stream(
            WATCH, membership_pb2.WatchMembersRequest()
        ):
            pass
