"""The WAN view of a datacenter, built from its LAN and WAN hubs."""

from __future__ import annotations

import asyncio

from agent.membership.hub import MemberHub, wan_view
from agent.state.members import Members
from agent.store.memory import MemoryStore
from generated.consul.membership.v1 import membership_pb2 as mpb


def server(name: str) -> mpb.Member:
    return mpb.Member(
        name=name, address="127.0.0.1:1", datacenter="dc1", role=mpb.MEMBER_ROLE_SERVER
    )


async def test_wan_view_does_not_rename_what_lan_subscribers_receive() -> None:
    """Regression: wan_view rewrote the hub's shared message in place, so a LAN
    subscriber could receive a server named ``s2.dc1`` and add it to its router."""
    async with MemoryStore() as store:
        lan = MemberHub(store, "lan")
        wan = MemberHub(store, "wan")
        await lan.start()
        await wan.start()
        try:
            lan_sub = lan.subscribe()
            view = wan_view(lan, wan)
            snapshot = await anext(view)
            assert snapshot.type == mpb.MEMBER_EVENT_TYPE_SNAPSHOT
            await Members(store, "lan").join(server("s2"))
            wan_event = await asyncio.wait_for(anext(view), 5)
            lan_event = await asyncio.wait_for(lan_sub.queue.get(), 5)
            assert lan_event is not None
            assert [m.name for m in wan_event.members] == ["s2.dc1"]
            assert [m.name for m in lan_event.members] == ["s2"]
            await view.aclose()
        finally:
            await lan.aclose()
            await wan.aclose()
