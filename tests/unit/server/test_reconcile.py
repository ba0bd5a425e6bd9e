"""The leader's membership-to-catalog reconciliation."""

from __future__ import annotations

from agent.server.reconcile import reconcile_once
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.members import Members
from agent.store.memory import MemoryStore
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
        memo.clear()  # the periodic full pass registers everyone again
        await reconcile_once(catalog, members, "dc1", memo)
        assert catalog.registrations == 3
