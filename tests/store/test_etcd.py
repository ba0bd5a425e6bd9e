"""What only the etcd store has: namespaces, endpoints, compaction, etcd going away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from etcd3aio import Etcd3Client

from agent.errors import InvalidArgument, StoreError
from agent.store import CompactedError, Delete, Put, open_store
from agent.store.etcd import EtcdStore, parse_endpoint
from tests.support.etcd import EtcdServer, free_port


def namespace() -> str:
    return f"/test/{uuid.uuid4().hex}/"


@pytest.fixture
async def etcd_store(etcd_server: EtcdServer) -> AsyncIterator[EtcdStore]:
    async with EtcdStore([etcd_server.endpoint], namespace()) as store:
        yield store


# -- configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2379", ("127.0.0.1", 2379)),
        ("http://etcd-1:2379/", ("etcd-1", 2379)),
        (" localhost:1 ", ("localhost", 1)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2379", "host:", "host:port", "host:0", "host:70000", "https://h:1", "[::1]:2379"]
)
def test_parse_endpoint_refuses_bad_input(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_endpoint(text)


def test_open_store() -> None:
    assert open_store("memory").kind == "memory"
    store = open_store("etcd", endpoints=["127.0.0.1:2379"], namespace="/ns/")
    assert store.kind == "etcd"
    with pytest.raises(InvalidArgument, match="unknown store kind 'zk'"):
        open_store("zk")
    with pytest.raises(InvalidArgument, match="endpoints"):
        open_store("etcd")
    with pytest.raises(InvalidArgument):
        open_store("memory", endpoints=["127.0.0.1:2379"])
    with pytest.raises(InvalidArgument):
        open_store("etcd", endpoints=["nonsense"])


async def test_not_started_is_a_store_error() -> None:
    store = EtcdStore(["127.0.0.1:2379"], "/ns/")
    with pytest.raises(StoreError, match="not started"):
        await store.get("k")


# -- etcd unreachable --------------------------------------------------------


async def test_unreachable_etcd_is_a_store_error_within_the_deadline() -> None:
    store = EtcdStore([f"127.0.0.1:{free_port()}"], "/ns/", timeout=1.0)
    start = time.monotonic()
    with pytest.raises(StoreError, match="etcd"):
        await store.start()
    assert time.monotonic() - start < 3.0


async def test_etcd_going_away_is_a_store_error_within_the_deadline() -> None:
    server = EtcdServer()
    async with server, EtcdStore([server.endpoint], namespace(), timeout=1.0) as store:
        lease = await store.grant_lease(30)
        await store.txn([], [Put("k", b"v")])
        server.kill()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get("k"),
            "range": lambda: store.range(""),
            "txn": lambda: store.txn([], [Put("k", b"w")]),
            "wait": lambda: store.wait(["k"], 1, 10.0),
            "grant": lambda: store.grant_lease(5),
            "keepalive": lambda: store.keepalive(lease),
            "revoke": lambda: store.revoke_lease(lease),
        }
        for name, call in calls.items():
            start = time.monotonic()
            with pytest.raises(StoreError):
                await call()
            assert time.monotonic() - start < 3.0, name


# -- namespaces --------------------------------------------------------------


async def test_namespaces_do_not_see_each_other(etcd_server: EtcdServer) -> None:
    async with (
        EtcdStore([etcd_server.endpoint], namespace()) as a,
        EtcdStore([etcd_server.endpoint], namespace()) as b,
    ):
        await a.txn([], [Put("svc/1", b"a")])
        assert (await b.get("svc/1"))[0] is None
        assert (await b.range(""))[0] == []
        _, after = await b.get("x")
        waiter = asyncio.create_task(b.wait([""], after, 0.3))
        await a.txn([], [Put("svc/2", b"a")])
        assert await waiter is False
        await b.txn([], [Put("svc/1", b"b")])
        await a.txn([], [Delete("", prefix=True)])
        assert (await a.range(""))[0] == []
        entry, _ = await b.get("svc/1")
        assert entry is not None and entry.value == b"b" and entry.key == "svc/1"


async def test_hostname_endpoints_are_resolved(etcd_server: EtcdServer) -> None:
    async with EtcdStore([f"localhost:{etcd_server.client_port}"], namespace()) as store:
        assert (await store.get("k"))[1] >= 1


# -- compaction --------------------------------------------------------------


async def test_compacted_history(etcd_store: EtcdStore, etcd_server: EtcdServer) -> None:
    _, first = await etcd_store.txn([], [Put("c/1", b"v")])
    _, last = await etcd_store.txn([], [Put("other", b"v")])
    async with Etcd3Client([etcd_server.endpoint]) as raw:
        assert raw.kv is not None
        await raw.kv.compact(last, physical=True, timeout=5.0)
    with pytest.raises(CompactedError) as info:
        await anext(etcd_store.watch("c/", first))
    assert info.value.compact_index >= last
    # A wait that cannot know any more answers True: the caller re-reads.
    assert await etcd_store.wait(["c/"], first - 1, 5.0) is True
    # From the compaction on, etcd still knows: nothing under c/ after `first`.
    assert await etcd_store.wait(["c/"], first, 0.2) is False


async def test_store_follows_etcd_back_within_seconds_regression(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: after etcd came back, servers took 12-17 s to follow (gRPC's default
    reconnect backoff grows to minutes) and logged "Task was destroyed but it is
    pending!" on the way. The store's channel now retries a connection at least
    every second, and the watches it had end cleanly."""
    etcd = EtcdServer(name="comeback")
    await etcd.start()
    try:
        async with EtcdStore([etcd.endpoint], namespace(), timeout=1.0) as store:
            await store.txn([], [Put("k", b"v")])
            waiter = asyncio.create_task(store.wait(["k"], 10**9, 30))
            etcd.kill()
            # The outage: calls keep failing for long enough that a default
            # backoff would have grown past ten seconds.
            down_until = time.monotonic() + 20
            while time.monotonic() < down_until:
                with pytest.raises(StoreError):
                    await store.get("k")
                await asyncio.sleep(0.2)
            await asyncio.to_thread(etcd.restart_sync)
            back = time.monotonic()
            entry = None
            while entry is None and time.monotonic() - back < 4:
                try:
                    entry, _ = await store.get("k")
                except StoreError:
                    await asyncio.sleep(0.05)
            assert entry is not None and entry.value == b"v", "store did not follow etcd back"
            # The wait that was open across the outage ended with a clear error.
            await asyncio.wait({waiter}, timeout=10)
            assert waiter.done()
            if not waiter.cancelled():
                assert waiter.exception() is None or isinstance(waiter.exception(), StoreError)
    finally:
        await etcd.aclose()
    noisy = [
        r.getMessage()
        for r in caplog.records
        if "destroyed but it is pending" in r.getMessage() or "already running" in r.getMessage()
    ]
    assert not noisy


# -- large namespaces (issue 16) ---------------------------------------------


async def test_range_larger_than_one_grpc_message(
    etcd_store: EtcdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30,000-key namespace (4.7 MB) was one range answer over gRPC's 4 MiB limit:
    a server could not load its replica. Ranges are paged, at one revision, and a
    page over ``MAX_RECEIVE`` is asked again in halves."""
    import agent.store.etcd as etcd_mod

    big = b"x" * 450_000
    for i in range(40):  # 18 MB: over MAX_RECEIVE (16 MiB) in one page
        await etcd_store.txn([], [Put(f"big/{i:02d}", big)])
    monkeypatch.setattr(etcd_mod, "RANGE_PAGE", 7)  # several pages of small keys too
    for i in range(20):
        await etcd_store.txn([], [Put(f"small/{i:02d}", str(i).encode())])
    entries, revision = await etcd_store.range("small/")
    assert [e.value for e in entries] == [str(i).encode() for i in range(20)]
    monkeypatch.setattr(etcd_mod, "RANGE_PAGE", 1000)
    entries, revision = await etcd_store.range("big/")
    assert len(entries) == 40 and all(e.value == big for e in entries)
    assert [e.key for e in entries] == [f"big/{i:02d}" for i in range(40)]
    _, now = await etcd_store.get("none")
    assert revision == now
