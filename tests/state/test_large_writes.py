"""Issue 9, bugs 1 and 2: state writes larger than one store transaction, and Txn lock-delay.

Every test runs on the memory store, on etcd and on an etcd replica (the
``store`` fixture); a few also run on a memory store built with a tiny
transaction limit, which reaches the splitting code with a handful of keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.errors import InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.kv import KVState, delete_tree_ops
from agent.state.sessions import RELEASE_PREFIX, SessionState
from agent.state.txn import MAX_OPS, TxnState
from agent.store import Delete, Put, Store
from agent.store.memory import MemoryStore
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.kv.v1 import kv_pb2
from generated.consul.session.v1 import session_pb2 as sspb
from generated.consul.txn.v1 import txn_pb2 as tpb

T = TypeVar("T")
PASSING = pb.HEALTH_STATUS_PASSING
CRITICAL = pb.HEALTH_STATUS_CRITICAL
#: A bound on how long a woken blocking read may take to answer.
PROMPT = 10.0


async def bulk_put(store: Store, names: list[str], value: bytes = b"v") -> None:
    """KV keys written straight to the store, a full transaction at a time (fast set-up)."""
    raw = kv_pb2.KVPair(value=value).SerializeToString()
    for start in range(0, len(names), store.max_txn_ops):
        ops = [Put(keys.kv_key(n), raw) for n in names[start : start + store.max_txn_ops]]
        assert (await store.txn([], ops))[0]


async def started_waiter(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """``coro`` as a task, once it is blocked (a blocking read that must wait)."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0.1)  # let it block
    assert not task.done()
    return task


# -- bug 1: recursive KV delete ------------------------------------------------


async def test_recursive_delete_larger_than_one_store_txn_regression(store: Store) -> None:
    kv = KVState(store)
    names = [f"big/{n // 100:03}/{n:05}" for n in range(10_000)]
    await bulk_put(store, names)
    await kv.put("bigger", b"neighbour")
    whole = await kv.list_prefix(QueryOpts(), "big/")
    assert len(whole.value) == 10_000
    part = await kv.list_prefix(QueryOpts(), "big/042/")
    everything = await kv.list_prefix(QueryOpts(), "")
    one = await kv.get(QueryOpts(), "big/042/04200")
    neighbour = await kv.get(QueryOpts(), "bigger")
    lists = [
        await started_waiter(kv.list_prefix(QueryOpts(min_index=r.index, max_wait=30), p))
        for r, p in [(whole, "big/"), (part, "big/042/"), (everything, "")]
    ]
    get = await started_waiter(kv.get(QueryOpts(min_index=one.index, max_wait=30), "big/042/04200"))
    not_woken = await started_waiter(
        kv.get(QueryOpts(min_index=neighbour.index, max_wait=1), "bigger")
    )

    index = await kv.delete("big/", recurse=True)  # was: 400 too many operations

    assert index > whole.index
    assert (await kv.list_prefix(QueryOpts(), "big/")).value == []
    assert [p.key for p in (await kv.list_prefix(QueryOpts(), "")).value] == ["bigger"]
    async with asyncio.timeout(PROMPT):
        woken = await asyncio.gather(*lists)
        gone = await get
    assert [[p.key for p in w.value] for w in woken] == [[], [], ["bigger"]]
    assert all(w.index >= index for w in woken) and gone.value is None and gone.index >= index
    assert (await not_woken).index == neighbour.index
    # Nothing left to delete: nothing written.
    assert await kv.delete("big/", recurse=True) == (await store.get("x"))[1]


async def test_prefix_index_never_moves_back_after_a_recursive_delete(store: Store) -> None:
    kv = KVState(store)
    await kv.put("p/a/old", b"1")
    await kv.delete("p/a/old")  # an old tombstone under p/a/
    _, newest = await kv.put("p/a/new", b"2")
    before = await kv.list_prefix(QueryOpts(), "p/a/")
    assert before.index == newest
    waiter = await started_waiter(
        kv.list_prefix(QueryOpts(min_index=before.index, max_wait=30), "p/a/")
    )
    index = await kv.delete("p/", recurse=True)
    async with asyncio.timeout(PROMPT):
        after = await waiter
    assert after.value == [] and after.index >= index > before.index
    assert (await kv.keys(QueryOpts(), "p/a/")).index >= index
    assert (await kv.get(QueryOpts(), "p/a/new")).index >= index


async def test_long_keys_find_the_range_tombstones_that_cover_them(store: Store) -> None:
    kv = KVState(store)
    deep = "long/" + "d" * 100 + "/"  # past the per-prefix lookups: one range read
    await kv.put(deep + "old", b"1")
    await kv.delete(deep + "old")
    _, newest = await kv.put(deep + "new", b"2")
    assert (await kv.list_prefix(QueryOpts(), deep)).index == newest
    index = await kv.delete("long/", recurse=True)
    assert (await kv.list_prefix(QueryOpts(), deep)).index >= index
    assert (await kv.get(QueryOpts(), deep + "new")).index >= index


# -- bug 1: a node with many services --------------------------------------------


async def register_big_node(catalog: Catalog, node: str, services: int) -> None:
    n = pb.Node(name=node, address="10.0.0.9")
    serf = pb.HealthCheck(check_id="serfHealth", name="serf", status=PASSING)
    await catalog.register(n, None, [serf])
    for i in range(services):
        svc = pb.Service(id=f"s{i}", name=f"svc-{i}", port=1000 + i)
        check = pb.HealthCheck(check_id=f"c{i}", name="c", status=PASSING, service_id=f"s{i}")
        await catalog.register(n, svc, [check])


async def test_node_with_1000_services_deregisters_regression(store: Store) -> None:
    catalog = Catalog(store)
    await register_big_node(catalog, "big", 1000)
    other = pb.Node(name="other", address="10.0.0.8")
    await catalog.register(other, pb.Service(id="svc-7", name="svc-7"), [])
    assert len((await catalog.list_services(QueryOpts())).value) == 1000

    # A node-level check change moves every service's index: 1 000 bumps.
    before = await catalog.service_health(QueryOpts(), "svc-999")
    waiter = await started_waiter(
        catalog.service_health(QueryOpts(min_index=before.index, max_wait=30), "svc-999")
    )
    crit = pb.HealthCheck(check_id="serfHealth", name="serf", status=CRITICAL)
    await catalog.register(pb.Node(name="big", address="10.0.0.9"), None, [crit])
    async with asyncio.timeout(PROMPT):
        woken = await waiter
    (entry,) = woken.value
    assert {c.status for c in entry.checks} == {PASSING, CRITICAL}

    seven = await catalog.service_instances(QueryOpts(), "svc-7")
    assert len(seven.value) == 2
    instances = await started_waiter(
        catalog.service_instances(QueryOpts(min_index=seven.index, max_wait=30), "svc-7")
    )
    index = await catalog.deregister("big")  # was: 400 too many operations
    async with asyncio.timeout(PROMPT):
        after = await instances
    assert [n.name for n, _ in after.value] == ["other"]
    assert index > seven.index
    assert [n.name for n in (await catalog.list_nodes(QueryOpts())).value] == ["other"]
    assert list((await catalog.list_services(QueryOpts())).value) == ["svc-7"]
    assert (await catalog.service_instances(QueryOpts(), "svc-500")).value == []
    assert (await catalog.node_checks(QueryOpts(), "big")).value == []
    assert (await store.range("services/"))[0] != []  # the other node's, only
    assert all("other" in e.key for e in (await store.range("services/"))[0])


async def test_split_node_removal_replans_after_a_concurrent_write() -> None:
    # A memory store that takes 8 ops: removing a node of 20 services takes
    # several guarded transactions; a registration landing in between makes
    # the removal plan again, and the end state is whole.
    async with MemoryStore(max_txn_ops=8) as store:
        catalog = Catalog(store)
        await register_big_node(catalog, "n", 20)
        real_txn = store.txn
        calls = 0

        async def txn_with_a_concurrent_write(compares, ops):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 2:  # after the first chunk: someone writes the node
                await real_txn([], [Put(keys.idx_node("n"), b"")])
            return await real_txn(compares, ops)

        store.txn = txn_with_a_concurrent_write  # type: ignore[method-assign]
        await catalog.deregister("n")
        store.txn = real_txn  # type: ignore[method-assign]
        assert calls > 3
        assert (await catalog.list_nodes(QueryOpts())).value == []
        assert (await catalog.list_services(QueryOpts())).value == {}
        assert (await store.range("services/"))[0] == []
        assert (await store.range("checks/"))[0] == []


async def test_service_with_many_checks_deregisters_on_a_small_store() -> None:
    async with MemoryStore(max_txn_ops=8) as store:
        catalog = Catalog(store)
        node = pb.Node(name="n", address="10.0.0.1")
        await catalog.register(node, pb.Service(id="web", name="web"), [])
        for i in range(30):
            check = pb.HealthCheck(check_id=f"c{i}", name="c", status=PASSING, service_id="web")
            await catalog.register(node, pb.Service(id="web", name="web"), [check])
        assert len((await catalog.node_checks(QueryOpts(), "n")).value) == 30
        await catalog.deregister("n", service_id="web")
        assert (await catalog.node_checks(QueryOpts(), "n")).value == []
        assert (await catalog.service_instances(QueryOpts(), "web")).value == []


async def test_register_restores_a_name_entry_lost_half_way(store: Store) -> None:
    catalog = Catalog(store)
    node = pb.Node(name="n", address="10.0.0.1")
    await catalog.register(node, pb.Service(id="web", name="web"), [])
    # As a removal stopped after its first transactions leaves it.
    await store.txn([], [Delete("services/web/n/", prefix=True), Put(keys.idx_service("web"), b"")])
    assert (await catalog.service_instances(QueryOpts(), "web")).value == []
    await catalog.register(node, pb.Service(id="web", name="web"), [])  # anti-entropy
    assert len((await catalog.service_instances(QueryOpts(), "web")).value) == 1


# -- bug 1: a session holding many locks -----------------------------------------


async def sessions_on(store: Store) -> tuple[Catalog, KVState, SessionState]:
    catalog = Catalog(store)
    kv = KVState(store)
    sessions = SessionState(store, catalog, kv)
    serf = pb.HealthCheck(check_id="serfHealth", name="serf", status=PASSING)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [serf])
    return catalog, kv, sessions


@pytest.mark.parametrize("behavior", [sspb.BEHAVIOR_RELEASE, sspb.BEHAVIOR_DELETE])
async def test_session_invalidation_releasing_many_locks_regression(
    store: Store, behavior: sspb.Behavior.ValueType
) -> None:
    catalog, kv, sessions = await sessions_on(store)
    sid, _ = await sessions.create(
        sspb.Session(node="n1", behavior=behavior, lock_delay=Duration(seconds=30)),
        node_checks_set=False,
    )
    held = [f"locks/{n:04}" for n in range(300)]
    for name in held:
        assert (await kv.put(name, b"mine", acquire=sid))[0]
    crit = pb.HealthCheck(check_id="serfHealth", name="serf", status=CRITICAL)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [crit])

    assert await sessions.invalidate_dead() == [sid]  # was: 300 separate writes, or a 400

    left = (await kv.list_prefix(QueryOpts(), "locks/")).value
    if behavior == sspb.BEHAVIOR_DELETE:
        assert left == []
    else:
        assert [p.key for p in left] == held and {p.session for p in left} == {""}
    assert (await store.range(RELEASE_PREFIX))[0] == []
    serf = pb.HealthCheck(check_id="serfHealth", name="serf", status=PASSING)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [serf])
    other, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
    assert not (await kv.put("locks/0123", b"theirs", acquire=other))[0]  # lock-delay
    with pytest.raises(InvalidArgument):
        await kv.put("locks/9999", b"late", acquire=sid)  # a dead session locks nothing


async def test_a_release_left_half_done_is_finished_by_the_leader() -> None:
    async with MemoryStore(max_txn_ops=8) as store:
        _, kv, sessions = await sessions_on(store)
        sid, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
        for n in range(20):
            assert (await kv.put(f"l/{n:02}", b"x", acquire=sid))[0]
        # What the first step of a two-step destroy leaves if the server dies then.
        await store.txn([], [Delete(keys.SESSIONS + sid), Put(RELEASE_PREFIX + sid, b"0 0")])
        assert {p.session for p in (await kv.list_prefix(QueryOpts(), "l/")).value} == {sid}
        assert await sessions.invalidate_dead() == []
        assert {p.session for p in (await kv.list_prefix(QueryOpts(), "l/")).value} == {""}
        assert (await store.range(RELEASE_PREFIX))[0] == []


async def test_destroy_of_a_session_too_large_for_one_txn_takes_two_steps() -> None:
    async with MemoryStore(max_txn_ops=8) as store:
        _, kv, sessions = await sessions_on(store)
        sid, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
        for n in range(20):
            assert (await kv.put(f"l/{n:02}", b"x", acquire=sid))[0]
        await sessions.destroy(sid)
        assert not await sessions.exists(sid)
        assert {p.session for p in (await kv.list_prefix(QueryOpts(), "l/")).value} == {""}
        assert (await store.range(RELEASE_PREFIX))[0] == []


# -- bug 1: txn ------------------------------------------------------------------


async def test_txn_of_64_deletes_fits_one_store_txn_regression(store: Store) -> None:
    kv = KVState(store)
    txn = TxnState(store, kv)
    names = [f"t/{n:02}" for n in range(MAX_OPS)]
    sets = await txn.apply([tpb.KVOp(verb="set", key=k, value=b"1") for k in names])
    assert not sets.errors
    # 64 deletes are 128 store ops (a delete and a tombstone each).
    deletes = await txn.apply([tpb.KVOp(verb="delete", key=k) for k in names])
    assert not deletes.errors and deletes.index > sets.index
    assert (await kv.list_prefix(QueryOpts(), "t/")).value == []
    again = await txn.apply([tpb.KVOp(verb="set", key=k, value=b"2") for k in names])
    assert not again.errors


async def test_txn_delete_tree_of_10000_keys_and_a_set_under_it(store: Store) -> None:
    kv = KVState(store)
    txn = TxnState(store, kv)
    await bulk_put(store, [f"tree/{n:05}" for n in range(10_000)] + ["tree/keep", "treetop"])
    out = await txn.apply(
        [
            tpb.KVOp(verb="get-tree", key="tree/"),
            tpb.KVOp(verb="delete-tree", key="tree/"),
            tpb.KVOp(verb="set", key="tree/keep", value=b"again"),
            tpb.KVOp(verb="get-tree", key="tree/"),
        ]
    )
    assert not out.errors
    assert len(out.results) == 10_001 + 1 + 1  # the tree, the set, the tree after
    left = (await kv.list_prefix(QueryOpts(), "tree")).value
    assert [(p.key, p.value) for p in left] == [("tree/keep", b"again"), ("treetop", b"v")]


# -- bug 2: a Txn lock ignores lock-delay ----------------------------------------


async def test_txn_lock_honours_lock_delay_regression(store: Store) -> None:
    _, kv, sessions = await sessions_on(store)
    txn = TxnState(store, kv)
    first, _ = await sessions.create(
        sspb.Session(node="n1", lock_delay=Duration(seconds=15)), node_checks_set=False
    )
    assert (await kv.put("k", b"a", acquire=first))[0]
    await sessions.destroy(first)
    other, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
    assert not (await kv.put("k", b"b", acquire=other))[0]  # refused, as before
    out = await txn.apply([tpb.KVOp(verb="lock", key="k", value=b"b", session=other)])
    assert [(e.op_index, e.what) for e in out.errors] == [
        (0, 'failed to lock key "k" due to lock delay')
    ]  # was: applied
    got = (await kv.get(QueryOpts(), "k")).value
    assert got is not None and got.session == "" and got.value == b"a"
    # The same rules otherwise: held by another session, unlock by a non-holder.
    assert (await kv.put("free", b"x", acquire=other))[0]
    third, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
    out = await txn.apply(
        [
            tpb.KVOp(verb="lock", key="free", session=third),
            tpb.KVOp(verb="unlock", key="free", session=third),
            tpb.KVOp(verb="lock", key="new", session="no-such-session"),
        ]
    )
    assert [e.what for e in out.errors] == [
        'failed to lock key "free", lock is already held',
        'failed to unlock key "free", lock isn\'t held, or is held by another session',
        'invalid session "no-such-session"',
    ]
    out = await txn.apply([tpb.KVOp(verb="lock", key="new", value=b"n", session=third)])
    assert not out.errors and out.results[0].lock_index == 1


async def test_leader_reconcile_removes_a_node_with_1000_services_regression() -> None:
    from agent.server.reconcile import reconcile_once
    from agent.state.members import Members

    async with MemoryStore() as store:
        catalog = Catalog(store)
        await register_big_node(catalog, "gone", 1000)  # serfHealth, and no member: it left
        await reconcile_once(catalog, Members(store), "dc1")  # was: 400 on every pass
        assert (await catalog.list_nodes(QueryOpts())).value == []
        assert (await catalog.list_services(QueryOpts())).value == {}


# -- guards: a concurrent write makes a plan evaluate again ------------------------


def write_before_first_txn(store: MemoryStore, ops: list[Put | Delete]) -> list[int]:
    """Make ``store`` apply ``ops`` just before the next transaction (once); call count."""
    real = store.txn
    calls = [0]

    async def txn(compares, store_ops):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 1:
            await real([], ops)
        return await real(compares, store_ops)

    store.txn = txn  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("compares", [128, 3], ids=["per-key-guards", "whole-kv-guards"])
async def test_txn_get_tree_is_evaluated_again_after_a_concurrent_write(compares: int) -> None:
    async with MemoryStore(max_txn_compares=compares) as store:
        kv = KVState(store)
        txn = TxnState(store, kv)
        await kv.put("g/a", b"1")
        await kv.put("g/b", b"1")
        ops = [
            tpb.KVOp(verb="get-tree", key="g/"),
            tpb.KVOp(verb="get", key="g/a"),
            tpb.KVOp(verb="set", key="out", value=b"x"),
        ]
        value = kv_pb2.KVPair(value=b"2").SerializeToString()
        calls = write_before_first_txn(store, [Put(keys.kv_key("g/c"), value)])
        out = await txn.apply(ops)
        assert calls[0] == 2  # the first commit failed its guard; evaluated again
        assert [r.key for r in out.results] == ["g/a", "g/b", "g/c", "g/a", "out"]
        # A recursive delete of an ancestor is seen too (it leaves a range tombstone).
        # Evaluated again, the transaction fails: nothing is written after all.
        write_before_first_txn(store, [*delete_tree_ops("g")])
        _, before = await store.get("x")
        out = await txn.apply(ops)
        assert [e.what for e in out.errors] == ['key "g/a" doesn\'t exist']
        assert (await store.get("x"))[1] == before + 1  # the delete-tree, only


async def test_session_destroy_does_not_leave_a_lock_taken_meanwhile() -> None:
    async with MemoryStore() as store:
        _, kv, sessions = await sessions_on(store)
        sid, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
        assert (await kv.put("a", b"1", acquire=sid))[0]
        # The session takes "b" after destroy read what it holds: as a lock
        # taken then would be, written straight to the store.
        held = kv_pb2.KVPair(value=b"2", session=sid, lock_index=1).SerializeToString()
        write_before_first_txn(store, [Put(keys.kv_key("b"), held)])
        await sessions.destroy(sid)
        left = (await kv.list_prefix(QueryOpts(), "")).value
        assert [(p.key, p.session) for p in left] == [("a", ""), ("b", "")]
