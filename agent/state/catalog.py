"""The catalog (nodes, services, checks) laid out on a store.

Layout (see ``keys``): ``nodes/<node>``; each service instance twice, under
``services/<name>/<node>/<id>`` for reads by service and ``nodesvc/<node>/<id>``
for reads by node; ``checks/<node>/<id>``. Every write to a node compares and
bumps ``idx/node/<node>/``, which makes the read-modify-write of one node
optimistic and atomic, and bumps the per-service, per-table index keys its
change touches. A write that changes nothing writes nothing, so an agent's
anti-entropy re-registering what is already there wakes no blocking query.

Removing a node takes one range delete per service name and three for the
node, so a node with any number of services can go; a write larger than one
store transaction is split under the node's guard (see ``Catalog._commit``).

Values are the ``consul.common.v1`` protobuf messages, without their indexes
(the store's create/modify indexes are filled in on the way out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from agent.errors import ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import (
    QueryOpts,
    Read,
    blocking_query,
    reader_barrier,
    reader_caught_up,
)
from agent.state.services import connect_targets
from agent.store import Compare, Delete, Entry, Op, Put, Store
from generated.consul.common.v1 import types_pb2 as pb

__all__ = [
    "CRITICAL",
    "MAINTENANCE",
    "PASSING",
    "WARNING",
    "Catalog",
]

PASSING = pb.HEALTH_STATUS_PASSING
WARNING = pb.HEALTH_STATUS_WARNING
CRITICAL = pb.HEALTH_STATUS_CRITICAL
MAINTENANCE = pb.HEALTH_STATUS_MAINTENANCE

NODESVC = "nodesvc/"
_M = TypeVar("_M", pb.Node, pb.Service, pb.HealthCheck)
_MAX_TRIES = 20
_SEVERITY: dict[int, int] = {PASSING: 0, WARNING: 1, CRITICAL: 2, MAINTENANCE: 3}


def _svc_by_name(name: str, node: str, service_id: str) -> str:
    return f"{keys.SERVICES}{keys.q(name)}/{keys.q(node)}/{keys.q(service_id)}"


def _svc_by_name_prefix(name: str, node: str) -> str:
    return f"{keys.SERVICES}{keys.q(name)}/{keys.q(node)}/"


def _svc_by_node(node: str, service_id: str) -> str:
    return f"{NODESVC}{keys.q(node)}/{keys.q(service_id)}"


def _load_node(entry: Entry) -> pb.Node:
    node = pb.Node.FromString(entry.value)
    node.create_index = entry.create_index
    node.modify_index = entry.modify_index
    return node


def _load_service(entry: Entry) -> pb.Service:
    svc = pb.Service.FromString(entry.value)
    svc.create_index = entry.create_index
    svc.modify_index = entry.modify_index
    return svc


def _load_check(entry: Entry) -> pb.HealthCheck:
    check = pb.HealthCheck.FromString(entry.value)
    check.create_index = entry.create_index
    check.modify_index = entry.modify_index
    return check


def _bare(msg: _M) -> bytes:
    """Serialized without indexes: what is stored, and what equality means."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.ClearField("create_index")
    copy.ClearField("modify_index")
    return copy.SerializeToString(deterministic=True)


def _meta_match(node: pb.Node, node_meta: Mapping[str, str]) -> bool:
    return all(node.meta.get(k) == v for k, v in node_meta.items())


def _connect_bumps(services: Sequence[pb.Service]) -> set[str]:
    """Index keys of the names these proxies (or native services) are Connect endpoints of:
    a change to a proxy of ``web`` moves ``web``'s index, which ``/v1/health/connect/web``
    waits on (Consul's connect-names index)."""
    return {keys.idx_service(t) for svc in services for t in connect_targets(svc)}


def _tags_match(svc: pb.Service, tags: Sequence[str]) -> bool:
    have = {t.lower() for t in svc.tags}
    return all(t.lower() in have for t in tags)


@dataclass(slots=True)
class _NodeView:
    """One node's current entries, read for a read-modify-write."""

    node: Entry | None
    services: dict[str, Entry]  # by service ID
    checks: dict[str, Entry]  # by check ID
    guard: int  # modify index of idx/node/<node>/, 0 if absent


class Catalog:
    """Catalog reads and writes; ``reader`` may be a local replica of ``store``."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store
        # list_services without a node filter, by (its index, the store's index):
        # it decoded every instance of the catalog per read (50,000 at scale).
        # The store's index too: a snapshot restore writes the index keys before
        # the entries they stand for, so their index alone could pin a partial
        # answer; any write moves the store's index.
        self._services_memo: tuple[tuple[int, int], dict[str, list[str]]] | None = None

    # ----- writes -------------------------------------------------------

    async def _node_view(self, node: str, fresh: bool) -> _NodeView:
        """The node's entries from the reader (a local replica on etcd: no round trip).

        A plan made on a stale view fails its guard compare and is planned
        again with ``fresh``, which first waits until the replica holds every
        acknowledged write (one small round trip). A stale view that asks for
        no write is never trusted (it may miss a write this one would undo):
        the callers read again ``fresh`` before answering "nothing to do".
        This was four etcd round trips per registration (issue 16: register
        ran at 0.06x raw etcd puts).
        """
        if fresh:
            await reader_barrier(self.reader)
        # The guard is read first: a write that lands after it changes it, so a
        # commit planned on the (possibly newer) entries read below fails its
        # compare and is planned again.
        guard, _ = await self.reader.get(keys.idx_node(node))
        entry, _ = await self.reader.get(keys.node_key(node))
        services, _ = await self.reader.range(f"{NODESVC}{keys.q(node)}/")
        checks, _ = await self.reader.range(keys.node_checks(node))
        return _NodeView(
            node=entry,
            services={keys.name_of(e.key): e for e in services},
            checks={keys.name_of(e.key): e for e in checks},
            guard=guard.modify_index if guard else 0,
        )

    async def _commit(
        self,
        node: str,
        view: _NodeView,
        ops: list[Op],
        bumps: set[str],
        lead: Sequence[tuple[list[Op], set[str]]] = (),
    ) -> int:
        """Apply a plan for ``node`` under its guard; the index, 0 if it must be planned again.

        ``ops`` and ``bumps`` (index keys to move) are the change; ``lead`` are
        groups of ops and their bumps that may go first, each whole in itself
        (an index key moves with the entries it stands for), such as the
        service-name entries of a node being removed. A plan that fits one store
        transaction is one transaction, atomic as Consul's. A larger one (a
        node with hundreds of services) is a revision-guarded sequence: the
        ``lead`` groups first, in transactions as large as the store takes,
        then ``ops`` with the bumps; each transaction compares and moves the
        node's guard, so a concurrent write to the node stops the sequence
        and the caller plans again from what is then stored. Service index
        bumps that do not fit the last transaction follow it at once (a
        blocking read of such a service wakes a few milliseconds later).
        """
        guard_key = keys.idx_node(node)
        service_bumps = sorted(b for b in bumps if b.startswith(keys.IDX_SERVICE))
        other_bumps = sorted((bumps | {guard_key}) - set(service_bumps))
        room = self.store.max_txn_ops
        groups = list(lead)
        guard = view.guard
        index = 0

        def tail_size() -> int:
            return len(ops) + len(other_bumps) + sum(len(o) + len(b) for o, b in groups)

        # Lead groups, in chunks, while the rest does not fit one transaction.
        while groups and tail_size() + len(service_bumps) > room:
            chunk: list[Op] = []
            moved = {guard_key}
            while groups and len(chunk) + len(moved | groups[0][1]) + len(groups[0][0]) <= room:
                group_ops, group_bumps = groups.pop(0)
                chunk += group_ops
                moved |= group_bumps
            if not chunk:  # a group larger than a transaction: never planned so
                raise ConsulError(f"catalog write on node {node!r} cannot be split")
            applied, index = await self.store.txn(
                [Compare(guard_key, guard)], [*chunk, *(Put(k, b"") for k in sorted(moved))]
            )
            if not applied:
                return 0
            guard = index
        final: list[Op] = [*ops, *(op for g, _ in groups for op in g)]
        for _, group_bumps in groups:
            for key in group_bumps:
                into = service_bumps if key.startswith(keys.IDX_SERVICE) else other_bumps
                if key not in into:
                    into.append(key)
        free = room - len(final) - len(other_bumps)
        if free < 0:
            raise ConsulError(f"catalog write on node {node!r} is too large for one store write")
        final += [Put(k, b"") for k in [*other_bumps, *service_bumps[:free]]]
        applied, index = await self.store.txn([Compare(guard_key, guard)], final)
        if not applied:
            return 0
        trail = service_bumps[free:]
        for start in range(0, len(trail), room):
            # Index keys only: idempotent, so no guard.
            _, index = await self.store.txn([], [Put(k, b"") for k in trail[start : start + room]])
        await reader_caught_up(self.reader, index)
        return index

    async def register(
        self,
        node: pb.Node,
        service: pb.Service | None = None,
        checks: Sequence[pb.HealthCheck] = (),
        *,
        skip_node_update: bool = False,
    ) -> int:
        """Register or update ``node`` with an optional service and checks; the index."""
        if not node.name:
            raise InvalidArgument("Must provide node")
        if not node.address and not skip_node_update:
            raise InvalidArgument("Must provide address")
        if service is not None and service.ByteSize() == 0:
            service = None
        if service is not None:
            if not service.name:
                raise InvalidArgument("Must provide service name")
            if not service.id:
                service.id = service.name
        for check in checks:
            if check.node and check.node != node.name:
                raise InvalidArgument(
                    f"Checks on node {check.node!r} cannot be registered with node {node.name!r}"
                )
            if not check.check_id:
                check.check_id = check.name
            if not check.check_id:
                raise InvalidArgument("Must provide check ID or name")
        fresh = self.reader is self.store
        for _ in range(_MAX_TRIES):
            view = await self._node_view(node.name, fresh)
            # A service whose name entry is missing (a removal of its node
            # stopped half way) is written again even if otherwise unchanged.
            # Read from the reader (a local replica on etcd): no round trip.
            by_name_missing = False
            if service is not None and service.id in view.services:
                stored = pb.Service.FromString(view.services[service.id].value)
                entry, _ = await self.reader.get(_svc_by_name(stored.name, node.name, service.id))
                by_name_missing = entry is None
            ops, bumps = self._plan_register(
                view, node, service, checks, skip_node_update, by_name_missing
            )
            if not ops and fresh:
                return view.guard or (await self.reader.get(keys.IDX_NODES))[1]
            if ops:
                index = await self._commit(node.name, view, ops, bumps)
                if index:
                    return index
            fresh = True
        raise ConsulError("catalog register: too much contention on node " + repr(node.name))

    def _plan_register(
        self,
        view: _NodeView,
        node: pb.Node,
        service: pb.Service | None,
        checks: Sequence[pb.HealthCheck],
        skip_node_update: bool,
        by_name_missing: bool = False,
    ) -> tuple[list[Op], set[str]]:
        ops: list[Op] = []
        bumps: set[str] = set()
        name = node.name
        services = {sid: _load_service(e) for sid, e in view.services.items()}
        node_changed = False
        if view.node is None or not skip_node_update:
            new_node = pb.Node()
            new_node.CopyFrom(node)
            if view.node is not None and not new_node.id:
                new_node.id = pb.Node.FromString(view.node.value).id
            if not new_node.address and view.node is not None:
                new_node.address = pb.Node.FromString(view.node.value).address
            if not new_node.address:
                raise InvalidArgument("Must provide address")
            value = _bare(new_node)
            if view.node is None or view.node.value != value:
                ops.append(Put(keys.node_key(name), value))
                bumps |= {keys.IDX_NODES, keys.IDX_SERVICES}
                node_changed = True
        changed_services: set[str] = set()
        if service is not None:
            old = services.get(service.id)
            value = _bare(service)
            if old is None or view.services[service.id].value != value or by_name_missing:
                ops.append(Put(_svc_by_node(name, service.id), value))
                ops.append(Put(_svc_by_name(service.name, name, service.id), value))
                changed_services.add(service.name)
                if old is not None and old.name != service.name:
                    ops.append(Delete(_svc_by_name(old.name, name, service.id)))
                    changed_services.add(old.name)
                bumps.add(keys.IDX_SERVICES)
                bumps |= _connect_bumps([service] if old is None else [service, old])
            services[service.id] = service
        node_level_check_changed = False
        for check in checks:
            new = pb.HealthCheck()
            new.CopyFrom(check)
            new.node = name
            if new.status not in _SEVERITY:
                new.status = CRITICAL
            if new.service_id:
                svc = services.get(new.service_id)
                if svc is None:
                    # Consul's state store's ErrMissingService (a 500, as Consul answers).
                    raise ConsulError("Missing service registration")
                new.service_name = svc.name
                del new.service_tags[:]
                new.service_tags.extend(svc.tags)
            else:
                new.service_name = ""
                del new.service_tags[:]
            value = _bare(new)
            old_entry = view.checks.get(new.check_id)
            if old_entry is not None and old_entry.value == value:
                continue
            ops.append(Put(keys.check_key(name, new.check_id), value))
            bumps.add(keys.IDX_CHECKS)
            if new.service_id:
                changed_services.add(new.service_name)
            else:
                node_level_check_changed = True
            if old_entry is not None:
                old_check = pb.HealthCheck.FromString(old_entry.value)
                if old_check.service_name:
                    changed_services.add(old_check.service_name)
                else:
                    node_level_check_changed = True
        if node_changed or node_level_check_changed:
            changed_services |= {s.name for s in services.values()}
        bumps |= {keys.idx_service(s) for s in changed_services}
        bumps |= _connect_bumps([s for s in services.values() if s.name in changed_services])
        return ops, bumps

    async def deregister(self, node: str, service_id: str = "", check_id: str = "") -> int:
        """Remove a node, or one service (with its checks) or one check of it."""
        if not node:
            raise InvalidArgument("Must provide node")
        fresh = self.reader is self.store
        for _ in range(_MAX_TRIES):
            view = await self._node_view(node, fresh)
            ops: list[Op] = []
            bumps: set[str] = set()
            lead: list[tuple[list[Op], set[str]]] = []
            services = {sid: _load_service(e) for sid, e in view.services.items()}
            checks = {cid: pb.HealthCheck.FromString(e.value) for cid, e in view.checks.items()}
            if service_id or check_id:
                if service_id and service_id in services:
                    svc = services[service_id]
                    ops += [
                        Delete(_svc_by_node(node, service_id)),
                        Delete(_svc_by_name(svc.name, node, service_id)),
                    ]
                    bumps |= {keys.IDX_SERVICES, keys.idx_service(svc.name)}
                    bumps |= _connect_bumps([svc])
                    # Its checks may go first, a transaction's worth at a time.
                    for cid, check in checks.items():
                        if check.service_id == service_id:
                            check_bumps = {keys.IDX_CHECKS, keys.idx_service(svc.name)}
                            lead.append(([Delete(keys.check_key(node, cid))], check_bumps))
                if check_id and check_id in checks:
                    check = checks[check_id]
                    ops.append(Delete(keys.check_key(node, check_id)))
                    bumps.add(keys.IDX_CHECKS)
                    if check.service_name:
                        bumps.add(keys.idx_service(check.service_name))
                        owner = services.get(check.service_id)
                        bumps |= _connect_bumps([owner] if owner is not None else [])
                    else:
                        bumps |= {keys.idx_service(s.name) for s in services.values()}
                        bumps |= _connect_bumps(list(services.values()))
            elif view.node is not None or services or checks:
                # One range delete per service name (the name's index moves
                # with it) and three for the node: any number of services.
                for name in sorted({svc.name for svc in services.values()}):
                    prefix = _svc_by_name_prefix(name, node)
                    named = [svc for svc in services.values() if svc.name == name]
                    moved = {keys.idx_service(name), *_connect_bumps(named)}
                    lead.append(([Delete(prefix, prefix=True)], moved))
                ops.append(Delete(keys.node_key(node)))
                ops.append(Delete(f"{NODESVC}{keys.q(node)}/", prefix=True))
                ops.append(Delete(keys.node_checks(node), prefix=True))
                bumps |= {keys.IDX_NODES, keys.IDX_SERVICES, keys.IDX_CHECKS}
                # Its network coordinates go with it (Consul's deleteNodeTxn): a
                # group of its own, so a small store's split plan still fits.
                lead.append(([Delete(keys.node_coords(node), prefix=True)], {keys.IDX_COORDS}))
            if not ops and not lead and fresh:
                return view.guard or (await self.reader.get(keys.IDX_NODES))[1]
            if ops or lead:
                index = await self._commit(node, view, ops, bumps, lead)
                if index:
                    return index
            fresh = True
        raise ConsulError("catalog deregister: too much contention on node " + repr(node))

    # ----- reads --------------------------------------------------------

    async def _index_of(self, *index_keys: str) -> tuple[int, int]:
        """(max modify index of the keys or the store index if none exist, store index)."""
        best = 0
        store_index = 0
        for key in index_keys:
            entry, store_index = await self.reader.get(key)
            if entry is not None:
                best = max(best, entry.modify_index)
        return (best or store_index or 1), store_index

    async def _nodes(self) -> dict[str, pb.Node]:
        entries, _ = await self.reader.range(keys.NODES)
        return {keys.name_of(e.key): _load_node(e) for e in entries}

    async def list_nodes(
        self, opts: QueryOpts, node_meta: Mapping[str, str] | None = None
    ) -> Read[list[pb.Node]]:
        async def read() -> Read[list[pb.Node]]:
            index, store_index = await self._index_of(keys.IDX_NODES)
            nodes = [n for n in (await self._nodes()).values() if _meta_match(n, node_meta or {})]
            return Read(nodes, index, store_index)

        return await blocking_query(self.reader, opts, [keys.IDX_NODES], read)

    async def list_services(
        self, opts: QueryOpts, node_meta: Mapping[str, str] | None = None
    ) -> Read[dict[str, list[str]]]:
        async def read() -> Read[dict[str, list[str]]]:
            index, store_index = await self._index_of(keys.IDX_SERVICES)
            memo = self._services_memo
            if not node_meta and memo is not None and memo[0] == (index, store_index):
                return Read(dict(memo[1]), index, store_index)
            nodes = await self._nodes() if node_meta else {}
            entries, _ = await self.reader.range(NODESVC)
            out: dict[str, set[str]] = {}
            for entry in entries:
                if node_meta:
                    node_name = keys.name_of(entry.key.rsplit("/", 1)[0])
                    n = nodes.get(node_name)
                    if n is None or not _meta_match(n, node_meta):
                        continue
                svc = pb.Service.FromString(entry.value)
                out.setdefault(svc.name, set()).update(svc.tags)
            value = {k: sorted(v) for k, v in sorted(out.items())}
            if not node_meta:
                self._services_memo = ((index, store_index), value)
            return Read(dict(value), index, store_index)

        return await blocking_query(self.reader, opts, [keys.IDX_SERVICES], read)

    async def get_node(
        self, opts: QueryOpts, node: str
    ) -> Read[tuple[pb.Node | None, list[pb.Service]]]:
        async def read() -> Read[tuple[pb.Node | None, list[pb.Service]]]:
            index, store_index = await self._index_of(keys.idx_node(node))
            entry, _ = await self.reader.get(keys.node_key(node))
            if entry is None:
                return Read((None, []), index, store_index)
            svcs, _ = await self.reader.range(f"{NODESVC}{keys.q(node)}/")
            return Read((_load_node(entry), [_load_service(e) for e in svcs]), index, store_index)

        return await blocking_query(self.reader, opts, [keys.idx_node(node)], read)

    async def _instances(
        self, name: str, tags: Sequence[str], node_meta: Mapping[str, str], connect: bool = False
    ) -> list[tuple[pb.Node, pb.Service]]:
        """Instances of ``name``; with ``connect``, its Connect endpoints instead (proxies
        whose destination is ``name``, and Connect-native instances of it)."""
        if connect:
            # Proxies are found by destination, which no key holds: every service
            # is read. Linear in the catalog's services.
            entries, _ = await self.reader.range(keys.SERVICES)
        else:
            entries, _ = await self.reader.range(f"{keys.SERVICES}{keys.q(name)}/")
        out: list[tuple[pb.Node, pb.Service]] = []
        nodes: dict[str, pb.Node | None] = {}
        for entry in entries:
            svc = _load_service(entry)
            if connect and name not in connect_targets(svc):
                continue
            if not _tags_match(svc, tags):
                continue
            node_name = keys.name_of(entry.key.rsplit("/", 1)[0])
            if node_name not in nodes:
                node_entry, _ = await self.reader.get(keys.node_key(node_name))
                nodes[node_name] = _load_node(node_entry) if node_entry else None
            node = nodes[node_name]
            if node is None or not _meta_match(node, node_meta):
                continue
            out.append((node, svc))
        return out

    async def service_instances(
        self,
        opts: QueryOpts,
        name: str,
        tags: Sequence[str] = (),
        node_meta: Mapping[str, str] | None = None,
        *,
        connect: bool = False,
    ) -> Read[list[tuple[pb.Node, pb.Service]]]:
        async def read() -> Read[list[tuple[pb.Node, pb.Service]]]:
            index, store_index = await self._index_of(keys.idx_service(name))
            rows = await self._instances(name, tags, node_meta or {}, connect)
            return Read(rows, index, store_index)

        return await blocking_query(self.reader, opts, [keys.idx_service(name)], read)

    async def _checks_of(self, node: str) -> list[pb.HealthCheck]:
        entries, _ = await self.reader.range(keys.node_checks(node))
        return [_load_check(e) for e in entries]

    async def service_health(
        self,
        opts: QueryOpts,
        name: str,
        tags: Sequence[str] = (),
        passing_only: bool = False,
        node_meta: Mapping[str, str] | None = None,
        *,
        connect: bool = False,
    ) -> Read[list[pb.ServiceEntry]]:
        async def read() -> Read[list[pb.ServiceEntry]]:
            index, store_index = await self._index_of(keys.idx_service(name))
            out: list[pb.ServiceEntry] = []
            by_node: dict[str, list[pb.HealthCheck]] = {}
            for node, svc in await self._instances(name, tags, node_meta or {}, connect):
                if node.name not in by_node:
                    by_node[node.name] = await self._checks_of(node.name)
                checks = [
                    c for c in by_node[node.name] if not c.service_id or c.service_id == svc.id
                ]
                if passing_only and any(c.status != PASSING for c in checks):
                    continue
                out.append(pb.ServiceEntry(node=node, service=svc, checks=checks))
            return Read(out, index, store_index)

        return await blocking_query(self.reader, opts, [keys.idx_service(name)], read)

    async def node_checks(self, opts: QueryOpts, node: str) -> Read[list[pb.HealthCheck]]:
        async def read() -> Read[list[pb.HealthCheck]]:
            index, store_index = await self._index_of(keys.idx_node(node))
            return Read(await self._checks_of(node), index, store_index)

        return await blocking_query(self.reader, opts, [keys.idx_node(node)], read)

    async def service_checks(self, opts: QueryOpts, name: str) -> Read[list[pb.HealthCheck]]:
        async def read() -> Read[list[pb.HealthCheck]]:
            index, store_index = await self._index_of(keys.idx_service(name))
            out: list[pb.HealthCheck] = []
            for node, svc in await self._instances(name, (), {}):
                out += [c for c in await self._checks_of(node.name) if c.service_id == svc.id]
            return Read(out, index, store_index)

        return await blocking_query(self.reader, opts, [keys.idx_service(name)], read)

    async def nodes_with_check(self, check_id: str) -> list[str]:
        """Names of the nodes holding check ``check_id``, from the check keys alone.

        The leader's reconcile scan used ``checks_in_state``, decoding every
        check of the catalog (20,000 at 20,000 instances: seconds of the
        leader's CPU on a loaded machine, issue 16) to find the serfHealth ones.
        As a default read: after a barrier when the reader is a replica.
        """
        await reader_barrier(self.reader)
        entries, _ = await self.reader.range(keys.CHECKS)
        suffix = "/" + keys.q(check_id)
        return [keys.name_of(e.key[: -len(suffix)]) for e in entries if e.key.endswith(suffix)]

    async def checks_in_state(self, opts: QueryOpts, state: int) -> Read[list[pb.HealthCheck]]:
        async def read() -> Read[list[pb.HealthCheck]]:
            index, store_index = await self._index_of(keys.IDX_CHECKS)
            entries, _ = await self.reader.range(keys.CHECKS)
            checks = [_load_check(e) for e in entries]
            if state != pb.HEALTH_STATUS_UNSPECIFIED:
                checks = [c for c in checks if c.status == state]
            return Read(checks, index, store_index)

        return await blocking_query(self.reader, opts, [keys.IDX_CHECKS], read)
