"""Membership state and the member hub on both stores."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.membership.hub import MemberHub
from agent.state.members import REBIND_CHUNK, Members
from agent.store import Store
from generated.consul.membership.v1 import membership_pb2 as mpb


def member(name: str, role: int = mpb.MEMBER_ROLE_NODE) -> mpb.Member:
    return mpb.Member(name=name, address="127.0.0.1:1", datacenter="dc1", role=role)


async def test_join_heartbeat_fail_reap(store: Store) -> None:
    members = Members(store, suspect_timeout=1, reconnect_timeout=1)
    hub = MemberHub(store)
    await hub.start()
    try:
        sub = hub.subscribe()
        await members.join(member("c1"))
        ev = await asyncio.wait_for(sub.queue.get(), 5)
        assert ev is not None and ev.type == mpb.MEMBER_EVENT_TYPE_JOIN
        assert await members.heartbeat("c1")
        assert not await members.heartbeat("unknown")
        # Silent: the lease lapses, the leader pass marks it FAILED.
        deadline = time.monotonic() + 15
        while True:
            await members.reconcile_liveness()
            listed, _ = await members.list()
            if listed[0].status == mpb.MEMBER_STATUS_FAILED:
                break
            assert time.monotonic() < deadline, "never failed"
            await asyncio.sleep(0.2)
        ev = await asyncio.wait_for(sub.queue.get(), 5)
        assert ev is not None and ev.type == mpb.MEMBER_EVENT_TYPE_FAILED
        await members.reconcile_liveness(now=time.time() + 5)
        ev = await asyncio.wait_for(sub.queue.get(), 5)
        assert ev is not None and ev.type == mpb.MEMBER_EVENT_TYPE_REAP
        assert (await members.list())[0] == []
    finally:
        await hub.aclose()


async def test_leave(store: Store) -> None:
    members = Members(store, suspect_timeout=5)
    hub = MemberHub(store)
    await hub.start()
    try:
        await members.join(member("c1"))
        for _ in range(100):  # the hub applies the join from its watch
            if "c1" in hub.members:
                break
            await asyncio.sleep(0.05)
        sub = hub.subscribe()
        assert [m.name for m in sub.snapshot.members] == ["c1"]
        await members.leave("c1")
        ev = await asyncio.wait_for(sub.queue.get(), 5)
        assert ev is not None and ev.type == mpb.MEMBER_EVENT_TYPE_LEAVE
        assert not await members.heartbeat("c1")
    finally:
        await hub.aclose()


async def test_heartbeats_cost_no_store_write(store: Store) -> None:
    """Scale: with one lease write per heartbeat, 5,000 members every 2.5 s were
    2,000 store operations a second. A heartbeat to the server that holds the
    member's alive key now writes nothing."""
    members = Members(store, suspect_timeout=5)
    await members.start()
    try:
        for i in range(50):
            await members.join(member(f"c{i}"))
        _, before = await store.get("anything")
        for _ in range(3):
            for i in range(50):
                assert await members.heartbeat(f"c{i}")
        _, after = await store.get("anything")
        assert after == before
    finally:
        await members.aclose()


async def test_member_moving_between_servers_is_never_failed(store: Store) -> None:
    """Two servers' tables on one store: a member heartbeats to A, fails over to
    B, comes back to A. A's and B's sweeps must never delete the key the other
    bound, so the leader never sees it silent."""
    a = Members(store, suspect_timeout=1)
    b = Members(store, suspect_timeout=1)
    await a.start()
    await b.start()
    try:
        await a.join(member("c1"))
        deadline = time.monotonic() + 4  # several sweeps of both tables
        turn = 0
        while time.monotonic() < deadline:
            server = a if (turn // 3) % 2 == 0 else b  # 3 beats at A, 3 at B, ...
            assert await server.heartbeat("c1")
            turn += 1
            await asyncio.sleep(0.1)
            await a.reconcile_liveness()
            listed, _ = await a.list()
            assert listed[0].status == mpb.MEMBER_STATUS_ALIVE, f"failed at beat {turn}"
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_dead_servers_members_fail_over_before_its_lease_ends(store: Store) -> None:
    """Server A dies (its lease is no longer renewed); its members heartbeat to
    B, which re-binds their keys: when A's lease ends, nobody is FAILED."""
    a = Members(store, suspect_timeout=1)
    b = Members(store, suspect_timeout=1)
    await a.start()
    await b.start()
    try:
        for i in range(5):
            await a.join(member(f"c{i}"))
        await a.aclose()  # A dies: no more renewals, no sweep
        for i in range(5):
            assert await b.heartbeat(f"c{i}")
        deadline = time.monotonic() + 3  # past A's lease TTL
        while time.monotonic() < deadline:
            for i in range(5):
                assert await b.heartbeat(f"c{i}")
            await b.reconcile_liveness()
            await asyncio.sleep(0.2)
        listed, _ = await b.list()
        assert {m.status for m in listed} == {mpb.MEMBER_STATUS_ALIVE}
        # And a member that really went silent still fails.
        deadline = time.monotonic() + 15
        while True:
            for i in range(4):
                assert await b.heartbeat(f"c{i}")
            await b.reconcile_liveness()
            listed, _ = await b.list()
            status = {m.name: m.status for m in listed}
            if status["c4"] == mpb.MEMBER_STATUS_FAILED:
                break
            assert time.monotonic() < deadline, "the silent member never failed"
            await asyncio.sleep(0.2)
        assert all(status[f"c{i}"] == mpb.MEMBER_STATUS_ALIVE for i in range(4))
    finally:
        await a.aclose()
        await b.aclose()


async def test_members_failing_over_together_share_bind_transactions(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a dead server's members (1,667 of 5,000) reach a survivor together;
    one bind transaction each made their heartbeats wait seconds."""
    a = Members(store, suspect_timeout=5)
    b = Members(store, suspect_timeout=5)
    names = [f"m{i:03d}" for i in range(200)]
    for name in names:
        await a.join(member(name))
    txns = 0
    real = store.txn

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal txns
        txns += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "txn", counting)
    assert all(await asyncio.gather(*(b.heartbeat(n) for n in names)))
    assert txns <= 1 + -(-len(names) // REBIND_CHUNK)  # the first alone, then 64 a time
    assert set(b.heard) == set(names)
    # Each key is now b's: a heartbeat there is a read again, no write.
    txns = 0
    assert all(await asyncio.gather(*(b.heartbeat(n) for n in names)))
    assert txns == 0
    await b.reconcile_liveness()
    listed, _ = await b.list()
    assert {m.status for m in listed} == {mpb.MEMBER_STATUS_ALIVE}
