"""Sessions, events and transactions on both stores."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.errors import InvalidArgument, NotFound
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.events import MAX_EVENTS, EventState
from agent.state.kv import KVState
from agent.state.sessions import SessionState
from agent.state.txn import TxnState
from agent.store import Store
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.session.v1 import session_pb2 as sspb
from generated.consul.txn.v1 import txn_pb2 as tpb


async def setup(store: Store) -> tuple[Catalog, KVState, SessionState]:
    catalog = Catalog(store)
    kv = KVState(store)
    sessions = SessionState(store, catalog, kv)
    serf = pb.HealthCheck(check_id="serfHealth", name="serf", status=pb.HEALTH_STATUS_PASSING)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [serf])
    return catalog, kv, sessions


async def test_session_lifecycle_and_locks(store: Store) -> None:
    _, kv, sessions = await setup(store)
    sid, _ = await sessions.create(sspb.Session(node="n1", name="lock"), node_checks_set=False)
    info = await sessions.info(QueryOpts(), sid)
    assert info.value is not None and list(info.value.node_checks) == ["serfHealth"]
    ok, _ = await kv.put("leader", b"me", acquire=sid)
    assert ok
    with pytest.raises(InvalidArgument):
        await kv.put("leader", b"x", acquire="not-a-session")
    await sessions.destroy(sid)
    got = await kv.get(QueryOpts(), "leader")
    assert got.value is not None and got.value.session == ""  # released
    assert (await sessions.list_sessions(QueryOpts())).value == []
    with pytest.raises(NotFound):
        await sessions.renew(sid)


async def test_session_validation(store: Store) -> None:
    catalog, _, sessions = await setup(store)
    with pytest.raises(InvalidArgument):
        await sessions.create(sspb.Session(node="nobody"), node_checks_set=False)
    with pytest.raises(InvalidArgument):
        await sessions.create(
            sspb.Session(node="n1", ttl=Duration(seconds=1)), node_checks_set=False
        )
    crit = pb.HealthCheck(check_id="serfHealth", name="serf", status=pb.HEALTH_STATUS_CRITICAL)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [crit])
    with pytest.raises(InvalidArgument, match="critical"):
        await sessions.create(sspb.Session(node="n1"), node_checks_set=False)


async def test_session_invalidated_by_critical_check_with_delete_behavior(store: Store) -> None:
    catalog, kv, sessions = await setup(store)
    sid, _ = await sessions.create(
        sspb.Session(node="n1", behavior=sspb.BEHAVIOR_DELETE), node_checks_set=False
    )
    await kv.put("held", b"1", acquire=sid)
    assert await sessions.invalidate_dead() == []
    crit = pb.HealthCheck(check_id="serfHealth", name="serf", status=pb.HEALTH_STATUS_CRITICAL)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [crit])
    assert await sessions.invalidate_dead() == [sid]
    assert (await kv.get(QueryOpts(), "held")).value is None  # deleted, not released


async def test_session_ttl_expiry(store: Store) -> None:
    _, _, sessions = await setup(store)
    sid, _ = await sessions.create(
        sspb.Session(node="n1", ttl=Duration(seconds=10)), node_checks_set=False
    )
    await sessions.renew(sid)
    assert await sessions.invalidate_dead() == []
    # The TTL lease is twice the TTL; revoke it to stand for its lapse.
    from agent.state.sessions import TTL_PREFIX

    entry, _ = await store.get(TTL_PREFIX + sid)
    assert entry is not None and entry.lease
    await store.revoke_lease(entry.lease)
    assert await sessions.invalidate_dead() == [sid]


async def test_events_fire_list_and_trim(store: Store) -> None:
    events = EventState(store)
    first = await events.fire(epb.Event(name="deploy", payload=b"v1"))
    assert first.id and first.ltime > 0
    await events.fire(epb.Event(name="other"))
    listed = await events.list(QueryOpts(), "deploy")
    assert [e.payload for e in listed.value] == [b"v1"]
    waiter = asyncio.create_task(events.list(QueryOpts(min_index=listed.index, max_wait=10), ""))
    await asyncio.sleep(0.1)
    await events.fire(epb.Event(name="deploy", payload=b"v2"))
    woke = await asyncio.wait_for(waiter, 5)
    assert woke.index > listed.index
    with pytest.raises(InvalidArgument):
        await events.fire(epb.Event(name=""))
    for i in range(MAX_EVENTS + 5):
        await events.fire(epb.Event(name="flood", payload=str(i).encode()))
    assert len((await events.list(QueryOpts(), "")).value) == MAX_EVENTS


async def test_txn_all_or_nothing(store: Store) -> None:
    kv = KVState(store)
    txn = TxnState(store, kv)
    _, idx = await kv.put("a", b"1")
    ok = await txn.apply(
        [
            tpb.KVOp(verb="check-index", key="a", index=idx),
            tpb.KVOp(verb="set", key="b", value=b"2"),
            tpb.KVOp(verb="get", key="a"),
        ]
    )
    assert not ok.errors and ok.index > idx
    assert [r.key for r in ok.results] == ["b", "a"]
    assert (await kv.get(QueryOpts(), "b")).value is not None
    bad = await txn.apply(
        [tpb.KVOp(verb="set", key="c", value=b"3"), tpb.KVOp(verb="cas", key="a", index=idx + 999)]
    )
    assert [e.op_index for e in bad.errors] == [1]
    assert (await kv.get(QueryOpts(), "c")).value is None  # nothing applied
    tree = await txn.apply(
        [tpb.KVOp(verb="delete-tree", key=""), tpb.KVOp(verb="get-tree", key="")]
    )
    assert not tree.errors and list(tree.results) == []
    assert (await kv.list_prefix(QueryOpts(), "")).value == []
    with pytest.raises(InvalidArgument):
        await txn.apply([tpb.KVOp(verb="explode", key="a")])


async def test_txn_get_after_set_keeps_value(store: Store) -> None:
    """Regression: a get after a set of the same key in one txn answered a null
    Value (the set's answer, blanked as Consul blanks writes, was the same object)."""
    txn = TxnState(store, KVState(store))
    ok = await txn.apply([tpb.KVOp(verb="set", key="g", value=b"v"), tpb.KVOp(verb="get", key="g")])
    assert not ok.errors
    assert [(r.key, r.value) for r in ok.results] == [("g", b""), ("g", b"v")]
    assert ok.results[1].modify_index == ok.index


async def test_lock_delay_after_session_destroy(store: Store) -> None:
    _, kv, sessions = await setup(store)
    sid, _ = await sessions.create(
        sspb.Session(node="n1", lock_delay=Duration(seconds=30)), node_checks_set=False
    )
    assert (await kv.put("lock", b"a", acquire=sid))[0]
    await sessions.destroy(sid)
    other, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
    ok, _ = await kv.put("lock", b"b", acquire=other)
    assert not ok  # within the lock-delay window
    nodelay, _ = await sessions.create(
        sspb.Session(node="n1", lock_delay=Duration(seconds=0)), node_checks_set=False
    )
    assert (await kv.put("free", b"x", acquire=nodelay))[0]
    await sessions.destroy(nodelay)
    assert (await kv.put("free", b"y", acquire=other))[0]  # no delay: at once


async def test_tombstone_gc(store: Store) -> None:
    import time as _time

    kv = KVState(store)
    await kv.put("gone/a", b"1")
    await kv.delete("gone/a")
    before = await kv.list_prefix(QueryOpts(), "gone/")
    assert await kv.reap_tombstones(older_than=3600) == 0
    assert await kv.reap_tombstones(older_than=60, now=_time.time() + 120) == 1
    after = await kv.list_prefix(QueryOpts(), "gone/")
    assert after.value == [] and after.index >= 1 and before.value == []
