"""Issue 16 (catalog at scale): fixes found by ``bench/catalog_scale.py``.

- A registration planned its write from four etcd reads (guard, node,
  services, checks) although the server holds a replica: register ran at
  0.06-0.08x raw etcd puts. It now plans from the replica; a stale plan
  fails its guard compare and is planned again after a barrier, and a stale
  view that asks for no write is re-read after a barrier before it is trusted.
- ``ReplicaStore.caught_up`` woke every waiting writer for every applied
  event (a Condition's notify_all); waiters are now a heap by index.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.errors import StoreError
from agent.state.blocking import QueryOpts
from agent.state.catalog import PASSING, Catalog
from agent.store import Entry, Put
from agent.store.memory import MemoryStore
from agent.store.replica import ReplicaStore
from generated.consul.common.v1 import types_pb2 as pb

pytestmark = pytest.mark.timeout(30)


class CountingStore(MemoryStore):
    """A memory store that counts the reads made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> tuple[Entry | None, int]:
        self.reads += 1
        return await super().get(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        self.reads += 1
        return await super().range(prefix)


@pytest.fixture
async def replicated() -> AsyncIterator[tuple[CountingStore, ReplicaStore]]:
    source = CountingStore()
    await source.start()
    replica = ReplicaStore(source)
    await replica.start()
    try:
        yield source, replica
    finally:
        await replica.aclose()
        await source.aclose()


def node(name: str = "n1") -> pb.Node:
    return pb.Node(name=name, address="10.0.0.1")


def service(sid: str, port: int = 80) -> pb.Service:
    return pb.Service(id=sid, name="web", port=port, tags=["v1"])


def check(sid: str) -> pb.HealthCheck:
    return pb.HealthCheck(check_id=f"service:{sid}", name="alive", status=PASSING, service_id=sid)


async def test_register_plans_from_the_replica_not_the_store_regression(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    source, replica = replicated
    catalog = Catalog(source, replica)
    await catalog.register(node(), service("web-1"), [check("web-1")])
    source.reads = 0
    for i in range(2, 12):
        await catalog.register(node(), service(f"web-{i}"), [check(f"web-{i}")])
    # Was 4 reads of the store per registration (40 here); now none: the
    # plan comes from the replica and the write is one guarded transaction.
    assert source.reads == 0
    read = await catalog.service_instances(QueryOpts(), "web")
    assert sorted(s.id for _, s in read.value) == sorted(f"web-{i}" for i in range(1, 12))


async def test_stale_replica_no_op_register_is_not_a_lost_write(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    source, replica = replicated
    catalog = Catalog(source, replica)
    await catalog.register(node(), service("web-1", port=80))
    # Another server writes port 81; this server's replica has not seen it
    # yet (a memory store's write does not yield to the replica's follower).
    await Catalog(source).register(node(), service("web-1", port=81))
    assert replica.index < source._index
    # Registering port 80 again: the stale view says "nothing to do", which
    # would leave 81 in the catalog although this write came last.
    await catalog.register(node(), service("web-1", port=80))
    read = await Catalog(source).service_instances(QueryOpts(), "web")
    assert [s.port for _, s in read.value] == [80]


async def test_stale_replica_plan_is_planned_again_on_a_moved_guard(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    source, replica = replicated
    catalog = Catalog(source, replica)
    await catalog.register(node(), service("web-1"))
    await Catalog(source).register(node(), service("web-2"))  # unseen by the replica
    assert replica.index < source._index
    await catalog.register(node(), service("web-3"))
    read = await Catalog(source).service_instances(QueryOpts(), "web")
    assert sorted(s.id for _, s in read.value) == ["web-1", "web-2", "web-3"]


async def test_caught_up_wakes_only_the_waiters_an_event_satisfies(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    source, replica = replicated
    catalog = Catalog(source)
    base = replica.index
    waiters = [asyncio.create_task(replica.caught_up(base + k, timeout=10)) for k in (1, 2, 3)]
    await asyncio.sleep(0)
    assert len(replica._waiters) == 3
    await catalog.register(node(), service("web-1"))  # one transaction: one index
    async with asyncio.timeout(5):
        await waiters[0]
    assert not waiters[1].done() and not waiters[2].done()
    assert [w[0] for w in replica._waiters] == [base + 2, base + 3]
    for i in (2, 3):
        await catalog.register(node(), service(f"web-{i}"))
    async with asyncio.timeout(5):
        await asyncio.gather(*waiters)
    assert replica._waiters == []


async def test_caught_up_timeout_leaves_no_waiter_behind(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    _, replica = replicated
    with pytest.raises(StoreError, match="behind"):
        await replica.caught_up(replica.index + 100, timeout=0.05)
    assert replica._waiters == []
    task = asyncio.create_task(replica.caught_up(replica.index + 100, timeout=10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert replica._waiters == []


async def test_list_services_is_memoized_by_its_index_regression() -> None:
    store = CountingStore()
    await store.start()
    catalog = Catalog(store)
    await catalog.register(node(), service("web-1"))
    first = await catalog.list_services(QueryOpts())
    store.reads = 0
    again = await catalog.list_services(QueryOpts())
    # The index key only: it was a range (and a decode) of every instance.
    assert store.reads == 1
    assert again.value == first.value == {"web": ["v1"]}
    again.value["mutated"] = []  # a caller's change does not reach the memo
    await catalog.register(node(), pb.Service(id="db-1", name="db", port=1, tags=["x"]))
    assert (await catalog.list_services(QueryOpts())).value == {"db": ["x"], "web": ["v1"]}
    await catalog.register(node(), pb.Service(id="db-1", name="db", port=1, tags=["y"]))
    assert (await catalog.list_services(QueryOpts())).value == {"db": ["y"], "web": ["v1"]}
    filtered = await catalog.list_services(QueryOpts(), {"rack": "r1"})
    assert filtered.value == {}
    await catalog.deregister("n1", service_id="db-1")
    assert (await catalog.list_services(QueryOpts())).value == {"web": ["v1"]}
    await catalog.deregister("n1")
    assert (await catalog.list_services(QueryOpts())).value == {}
    await store.aclose()


async def test_nodes_with_check_reads_keys_not_values_regression(
    replicated: tuple[CountingStore, ReplicaStore],
) -> None:
    source, replica = replicated
    catalog = Catalog(source, replica)
    serf = pb.HealthCheck(check_id="serfHealth", name="Serf", status=PASSING)
    await catalog.register(node("a/b"), checks=[serf])
    await catalog.register(node("serfHealth"), service("web-1"), [check("web-1")])
    await catalog.register(node("c"), checks=[serf, pb.HealthCheck(check_id="xserfHealth")])
    # A check value that does not decode: the leader's reconcile scan decoded
    # every check of the catalog (checks_in_state) to find the serfHealth ones.
    await source.txn([], [Put("checks/d/other", b"\xff not a protobuf")])
    assert await catalog.nodes_with_check("serfHealth") == ["a/b", "c"]
    assert await catalog.nodes_with_check("service:web-1") == ["serfHealth"]


async def test_list_services_memo_sees_entries_written_after_their_index_key() -> None:
    store = MemoryStore()
    await store.start()
    catalog = Catalog(store)
    await catalog.register(node(), service("web-1"))
    assert (await catalog.list_services(QueryOpts())).value == {"web": ["v1"]}
    # As a snapshot restore writes: entries after (and without) their index key.
    db = pb.Service(id="db-1", name="db", port=1)
    await store.txn([], [Put("nodesvc/n1/db-1", db.SerializeToString(deterministic=True))])
    assert (await catalog.list_services(QueryOpts())).value == {"db": [], "web": ["v1"]}
    await store.aclose()
