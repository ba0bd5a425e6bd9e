"""The leader's membership-to-catalog reconciliation."""

from __future__ import annotations

import asyncio

from agent.server.reconcile import REGISTER_CONCURRENCY, reconcile_once
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.members import Members
from agent.store.memory import MemoryStore
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb


class CountingCatalog(Catalog):
    registrations = 0

    async def register(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.registrations += 1
        return await super().register(*args, **kwargs)


async def test_unchanged_members_are_not_registered_again() -> None:
    async with MemoryStore() as store:
        catalog = CountingCatalog(store)
        members = Members(store, suspect_timeout=30)
        for name in ("a", "b"):
            await members.join(
                mpb.Member(
                    name=name, address="127.0.0.1:1", datacenter="dc1", role=mpb.MEMBER_ROLE_NODE
                )
            )
        memo: dict[str, bytes] = {}
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.registrations == 2
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.registrations == 2  # nothing changed: no registration
        await members.leave("b")
        await reconcile_once(catalog, members, "dc1", memo)
        assert set(memo) == {"a"}
        nodes = await catalog.list_nodes(QueryOpts())
        assert [n.name for n in nodes.value] == ["a"]  # b left: deregistered
        # The periodic full pass checks everyone against the catalog and
        # registers again only what differs there (here: a's check, changed
        # behind the leader's back).
        serf = pb.HealthCheck(check_id="serfHealth", name="x", status=pb.HEALTH_STATUS_CRITICAL)
        await catalog.register(pb.Node(name="a", address="127.0.0.1"), None, [serf])
        memo.clear()
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.registrations == 4  # 3 + the one repair; nothing else
        memo.clear()
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.registrations == 4  # all in the catalog already: no registration
        checks = await catalog.node_checks(QueryOpts(), "a")
        assert [c.status for c in checks.value] == [pb.HEALTH_STATUS_PASSING]


class SlowCatalog(Catalog):
    """Each registration takes a while (an etcd round trip or five); counts the most at once."""

    in_flight = 0
    most = 0

    async def register(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().register(*args, **kwargs)
        finally:
            self.in_flight -= 1


async def test_many_joins_are_registered_concurrently() -> None:
    """5,000 joins registered one after the other did not reach the catalog in 2 minutes."""
    async with MemoryStore() as store:
        catalog = SlowCatalog(store)
        members = Members(store, suspect_timeout=30)
        for i in range(200):
            await members.join(
                mpb.Member(
                    name=f"m{i}", address="127.0.0.1:1", datacenter="dc1", role=mpb.MEMBER_ROLE_NODE
                )
            )
        memo: dict[str, bytes] = {}
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.most == REGISTER_CONCURRENCY
        assert len(memo) == 200
        nodes = await catalog.list_nodes(QueryOpts())
        assert len(nodes.value) == 200
