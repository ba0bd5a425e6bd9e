"""Membership state and the member hub on both stores."""

from __future__ import annotations

import asyncio
import time

from agent.membership.hub import MemberHub
from agent.state.members import Members
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
