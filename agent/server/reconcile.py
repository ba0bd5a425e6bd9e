"""Leader-only work: membership liveness, and membership into the catalog.

As Consul's leader does with Serf members: an alive member has its node in
the catalog with a passing ``serfHealth`` check (servers also the ``consul``
service); a failed member's ``serfHealth`` goes critical; a member that left
or was reaped is deregistered. Catalog nodes with a ``serfHealth`` check and
no member are deregistered too; nodes registered only through the catalog
(external services) are left alone.

The loop reacts to membership changes at once (a store wait on the member and
liveness prefixes) and runs at least every ``interval`` seconds for the
time-based steps (reap).
"""

from __future__ import annotations

import asyncio
import logging
import time

from agent.errors import ConsulError
from agent.state import keys
from agent.state.catalog import Catalog
from agent.state.kv import KVState
from agent.state.members import Members
from agent.state.sessions import TTL_PREFIX, SessionState
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["SERF_CHECK", "reconcile_forever", "reconcile_once"]

logger = logging.getLogger(__name__)

SERF_CHECK = "serfHealth"
#: Consul keeps KV tombstones about 15 minutes (its tombstone GC granularity).
TOMBSTONE_TTL = 15 * 60.0
TOMBSTONE_GC_INTERVAL = 60.0
#: Every member is registered again this often, as Consul's leader reconciles
#: all Serf members every 60 s besides reacting to member events.
FULL_RECONCILE_INTERVAL = 60.0
CONSUL_SERVICE = "consul"


def _host(address: str) -> str:
    host = address.rsplit(":", 1)[0]
    return host.strip("[]")


def _port(address: str) -> int:
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


#: Registrations in flight at once in a reconcile pass. Each is a few store
#: round trips: one after the other, 5,000 members joining an etcd cluster
#: were not all in the catalog after two minutes.
REGISTER_CONCURRENCY = 16


async def _in_catalog(catalog: Catalog, member: mpb.Member, datacenter: str) -> bool:
    """Whether the catalog already holds ``member`` as the leader registers it.

    Read from the catalog's reader (a server's local replica: no round trip),
    as Consul's leader checks its state store before it registers a member:
    the node's address (and ID), the ``serfHealth`` status and output. The
    periodic full pass over 5,000 members is then 5,000 local lookups, not
    20,000 etcd reads.
    """
    node, service, check = _member_records(member, datacenter)
    entry, _ = await catalog.reader.get(keys.node_key(node.name))
    stored_check, _ = await catalog.reader.get(keys.check_key(node.name, SERF_CHECK))
    if entry is None or stored_check is None:
        return False
    stored = pb.Node.FromString(entry.value)
    if stored.address != node.address or stored.datacenter != node.datacenter:
        return False
    if node.id and stored.id != node.id:
        return False
    have = pb.HealthCheck.FromString(stored_check.value)
    if (have.status, have.output, have.name, have.service_id) != (
        check.status,
        check.output,
        check.name,
        "",
    ):
        return False
    # A server (a handful of members) is registered again: its ``consul``
    # service is the catalog's to compare.
    return service is None


def _member_records(
    member: mpb.Member, datacenter: str
) -> tuple[pb.Node, pb.Service | None, pb.HealthCheck]:
    """The node, service (servers only) and ``serfHealth`` check of ``member``."""
    alive = member.status == mpb.MEMBER_STATUS_ALIVE
    node = pb.Node(
        name=member.name,
        address=member.tags.get("node_address") or _host(member.address),
        datacenter=datacenter,
    )
    if member.tags.get("node_id"):
        node.id = member.tags["node_id"]
    check = pb.HealthCheck(
        node=member.name,
        check_id=SERF_CHECK,
        name="Serf Health Status",
        status=pb.HEALTH_STATUS_PASSING if alive else pb.HEALTH_STATUS_CRITICAL,
        output="Agent alive and reachable" if alive else "Agent not live or unreachable",
    )
    service = None
    if member.role == mpb.MEMBER_ROLE_SERVER:
        service = pb.Service(id=CONSUL_SERVICE, name=CONSUL_SERVICE, port=_port(member.address))
    return node, service, check


async def _register_member(catalog: Catalog, member: mpb.Member, datacenter: str) -> None:
    node, service, check = _member_records(member, datacenter)
    if service is not None:
        await catalog.register(node, service, [check])
    else:
        await catalog.register(node, None, [check])


async def reconcile_once(
    catalog: Catalog,
    members: Members,
    datacenter: str,
    reconciled: dict[str, bytes] | None = None,
) -> int:
    """One pass; the store index the member list was read at.

    ``reconciled`` remembers each member as last registered: a member that has
    not changed since is not registered again (each registration reads its
    node from the store), and the catalog is scanned for nodes without a
    member only when a member went away (or ``reconciled`` is empty: the
    caller clears it now and then to repair what changed behind our back). A
    pass over a quiet cluster of 5,000 members reads two in-memory ranges.
    """
    index = await members.reconcile_liveness()
    current, _ = await members.list()
    wanted = {
        m.name: m
        for m in current
        if m.status in (mpb.MEMBER_STATUS_ALIVE, mpb.MEMBER_STATUS_FAILED)
    }
    memo = {} if reconciled is None else reconciled
    scan = not memo
    for name in set(memo) - set(wanted):
        del memo[name]
        scan = True
    todo = []
    for member in wanted.values():
        state = member.SerializeToString(deterministic=True)
        if memo.get(member.name) != state:
            todo.append((member, state))

    async def registrar() -> None:
        while todo:
            member, state = todo.pop()
            try:
                if not await _in_catalog(catalog, member, datacenter):
                    await _register_member(catalog, member, datacenter)
                memo[member.name] = state
            except ConsulError as exc:
                logger.warning("reconcile: register failed member=%s error=%s", member.name, exc)

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(REGISTER_CONCURRENCY, len(todo))):
            tg.create_task(registrar())
    if not scan:
        return index
    for node in await catalog.nodes_with_check(SERF_CHECK):
        if node not in wanted:
            logger.info("reconcile: deregistering node=%s (left or reaped)", node)
            await catalog.deregister(node)
    return index


async def reconcile_forever(
    catalog: Catalog,
    members: Members,
    datacenter: str,
    interval: float = 1.0,
    wan: Members | None = None,
    sessions: SessionState | None = None,
    kv: KVState | None = None,
) -> None:
    """Run ``reconcile_once`` on every membership change, at least every ``interval``.

    With ``wan``, the WAN pool's liveness (remote servers that joined this
    datacenter) is kept here too: FAILED when silent, reaped later.
    """
    prefixes = [members.prefix, members.alive_prefix]
    if wan is not None:
        prefixes += [wan.prefix, wan.alive_prefix]
    if sessions is not None:
        prefixes += [keys.SESSIONS, TTL_PREFIX, keys.IDX_CHECKS, keys.IDX_NODES]
    next_gc = time.monotonic() + TOMBSTONE_GC_INTERVAL
    next_full = time.monotonic() + FULL_RECONCILE_INTERVAL
    reconciled: dict[str, bytes] = {}
    while True:
        try:
            if kv is not None and time.monotonic() >= next_gc:
                next_gc = time.monotonic() + TOMBSTONE_GC_INTERVAL
                reaped = await kv.reap_tombstones(TOMBSTONE_TTL)
                if reaped:
                    logger.info("tombstone gc: reaped=%d", reaped)
            if time.monotonic() >= next_full:
                next_full = time.monotonic() + FULL_RECONCILE_INTERVAL
                reconciled.clear()
            index = await reconcile_once(catalog, members, datacenter, reconciled)
            if wan is not None:
                index = min(index, await wan.reconcile_liveness())
            if sessions is not None:
                for dead in await sessions.invalidate_dead():
                    logger.info("session invalidated session=%s", dead)
            await members.store.wait(prefixes, index, interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("reconcile failed error=%s", exc)
            await asyncio.sleep(interval)
