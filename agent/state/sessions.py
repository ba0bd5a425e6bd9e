"""Sessions on the store, as Consul's: liveness that KV locks hang on.

``sessions/<id>`` holds the session; a session with a TTL also has
``sessionttl/<id>`` bound to a lease of twice its TTL (Consul grants the same
grace), renewed by ``renew``. The leader invalidates a session when its TTL
lease lapses, its node leaves the catalog, or one of its checks is critical;
invalidating releases the keys it holds (or deletes them, with the ``delete``
behavior), and sets their lock-delay.

Destroying is atomic, as Consul's, when the session and its keys fit in one
store transaction: guarded by the session's record, the modify index of each
key it holds, and "no KV key written since they were read" (so a lock the
session takes meanwhile is not left behind). A session holding more keys
than that ends in two steps: first its record goes, with a release record
``sessionrel/<id>`` in the same transaction (from then on the session takes
no lock: every acquire is guarded by the session's record); then its keys are
released in transactions as large as the store takes, and the release record
goes last. Until then those keys still name the dead session, so nobody else
can take them; the leader finishes a release that a crash left half done.
"""

from __future__ import annotations

import math
import time
import uuid

from agent.durations import duration_seconds, seconds_duration
from agent.errors import ConsulError, InvalidArgument, NotFound
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.state.catalog import Catalog
from agent.state.kv import KVState
from agent.store import Compare, Delete, Entry, Op, Put, Store
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.session.v1 import session_pb2 as sspb

__all__ = ["SessionState"]

TTL_PREFIX = "sessionttl/"
#: A session whose record is gone but whose keys are still being released.
RELEASE_PREFIX = "sessionrel/"
MIN_TTL = 10.0
MAX_TTL = 24 * 3600.0
DEFAULT_LOCK_DELAY = 15.0
MAX_LOCK_DELAY = 60.0
_MAX_TRIES = 20
_ATOMIC_TRIES = 3
#: How often the leader looks for releases a crash left half done.
RELEASE_SWEEP_INTERVAL = 60.0


def _load(entry: Entry) -> sspb.Session:
    s = sspb.Session.FromString(entry.value)
    s.create_index = entry.create_index
    s.modify_index = entry.modify_index
    return s


class SessionState:
    def __init__(self, store: Store, catalog: Catalog, kv: KVState) -> None:
        self.store = store
        self.catalog = catalog
        self.kv = kv
        kv.session_index = self.index_of
        self._next_release_sweep = 0.0

    async def exists(self, session_id: str) -> bool:
        return bool(await self.index_of(session_id))

    async def index_of(self, session_id: str) -> int:
        """The modify index of the session's record; 0 if it does not exist."""
        entry, _ = await self.store.get(keys.SESSIONS + session_id)
        return entry.modify_index if entry is not None else 0

    async def create(self, session: sspb.Session, *, node_checks_set: bool) -> tuple[str, int]:
        s = sspb.Session()
        s.CopyFrom(session)
        if not s.node:
            raise InvalidArgument("Must provide Node")
        if not node_checks_set and not s.node_checks:
            s.node_checks.append("serfHealth")
        ttl = duration_seconds(s.ttl, "TTL") if s.HasField("ttl") else 0.0
        if ttl and not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidArgument(f"Invalid Session TTL '{ttl:g}s', must be between [10s=24h0m0s]")
        delay = (
            duration_seconds(s.lock_delay, "LockDelay")
            if s.HasField("lock_delay")
            else DEFAULT_LOCK_DELAY
        )
        if delay > MAX_LOCK_DELAY:
            delay = MAX_LOCK_DELAY
        s.lock_delay.CopyFrom(seconds_duration(delay))
        if s.behavior == sspb.BEHAVIOR_UNSPECIFIED:
            s.behavior = sspb.BEHAVIOR_RELEASE
        if s.behavior not in (sspb.BEHAVIOR_RELEASE, sspb.BEHAVIOR_DELETE):
            raise InvalidArgument(f"Invalid Behavior setting {s.behavior}")
        node, _ = await self.store.get(keys.node_key(s.node))
        if node is None:
            raise InvalidArgument(f"Missing node registration: node {s.node!r} is unknown")
        checks = {c.check_id: c for c in await self._checks(s.node)}
        for check_id in [*s.node_checks, *s.service_checks]:
            check = checks.get(check_id)
            if check is None:
                raise InvalidArgument(f"Missing check '{check_id}' registration")
            if check.status == pb.HEALTH_STATUS_CRITICAL:
                raise InvalidArgument(f"Check '{check_id}' is in critical state")
        s.id = str(uuid.uuid4())
        s.ClearField("create_index")
        s.ClearField("modify_index")
        ops: list[Op] = [Put(keys.SESSIONS + s.id, s.SerializeToString())]
        if ttl:
            lease = await self.store.grant_lease(max(1, math.ceil(ttl * 2)))
            ops.append(Put(TTL_PREFIX + s.id, b"", lease=lease))
        _, index = await self.store.txn([], ops)
        return s.id, index

    async def _checks(self, node: str) -> list[pb.HealthCheck]:
        return (await self.catalog.node_checks(QueryOpts(), node)).value

    async def renew(self, session_id: str) -> sspb.Session:
        entry, _ = await self.store.get(keys.SESSIONS + session_id)
        if entry is None:
            raise NotFound(f"Session id '{session_id}' not found")
        ttl_entry, _ = await self.store.get(TTL_PREFIX + session_id)
        if ttl_entry is not None and ttl_entry.lease:
            await self.store.keepalive(ttl_entry.lease)
        return _load(entry)

    async def destroy(self, session_id: str) -> int:
        """End the session, releasing (or deleting) every key it holds; the index."""
        for attempt in range(_MAX_TRIES):
            entry, index = await self.store.get(keys.SESSIONS + session_id)
            if entry is None:
                return await self._finish_release(session_id) or index or 1
            session = _load(entry)
            delete = session.behavior == sspb.BEHAVIOR_DELETE
            delay = duration_seconds(session.lock_delay) if session.HasField("lock_delay") else 0.0
            until = str(time.time() + delay).encode() if delay > 0 else b""
            ttl_entry, _ = await self.store.get(TTL_PREFIX + session_id)
            gone: list[Op] = [Delete(entry.key), Delete(TTL_PREFIX + session_id)]
            held, read_at = await self.kv.held_by(session_id)
            ops = list(gone)
            for e in held:
                ops += self.kv.release_ops(e, session_id, delete=delete, until=until)
            compares = [
                Compare(entry.key, entry.modify_index),
                Compare(keys.KV, read_at, prefix=True),
                *(Compare(e.key, e.modify_index) for e in held),
            ]
            fits = (
                len(ops) <= self.store.max_txn_ops and len(compares) <= self.store.max_txn_compares
            )
            # A busy KV keeps failing the "nothing written since" guard: after a
            # few tries, the two steps (which need no such guard) instead.
            if fits and attempt < _ATOMIC_TRIES:
                applied, index = await self.store.txn(compares, ops)
                if not applied:
                    continue  # the session or a key changed meanwhile: plan again
            else:
                intent = f"{int(delete)} {until.decode() or 0}".encode()
                applied, index = await self.store.txn(
                    [Compare(entry.key, entry.modify_index)],
                    [*gone, Put(RELEASE_PREFIX + session_id, intent)],
                )
                if not applied:
                    continue
                index = await self._finish_release(session_id) or index
            if ttl_entry is not None and ttl_entry.lease:
                await self.store.revoke_lease(ttl_entry.lease)
            await reader_caught_up(self.kv.reader, index)
            return index
        raise ConsulError(f"session destroy: too much contention on {session_id!r}")

    async def _finish_release(self, session_id: str) -> int:
        """Release what a session destroyed in two steps still holds; the index (0: none)."""
        intent, _ = await self.store.get(RELEASE_PREFIX + session_id)
        if intent is None:
            return 0
        flag, _, until_text = intent.value.decode().partition(" ")
        try:
            remaining = max(0.0, float(until_text) - time.time()) if until_text else 0.0
        except ValueError:
            remaining = 0.0
        index = await self.kv.release_session(session_id, remaining, delete=flag == "1")
        applied, done = await self.store.txn(
            [Compare(intent.key, intent.modify_index)], [Delete(intent.key)]
        )
        return max(index, done) if applied else index

    async def finish_releases(self) -> int:
        """Leader only: finish every two-step release a crash left half done; how many."""
        pending, _ = await self.store.range(RELEASE_PREFIX)
        for entry in pending:
            await self._finish_release(entry.key[len(RELEASE_PREFIX) :])
        return len(pending)

    async def _all(self) -> tuple[list[sspb.Session], int]:
        entries, index = await self.store.range(keys.SESSIONS)
        return [_load(e) for e in entries], index

    async def info(self, opts: QueryOpts, session_id: str) -> Read[sspb.Session | None]:
        async def read() -> Read[sspb.Session | None]:
            entry, index = await self.store.get(keys.SESSIONS + session_id)
            if entry is None:
                return Read(None, index or 1, index)
            return Read(_load(entry), entry.modify_index, index)

        return await blocking_query(self.store, opts, [keys.SESSIONS + session_id], read)

    async def list_sessions(self, opts: QueryOpts, node: str = "") -> Read[list[sspb.Session]]:
        async def read() -> Read[list[sspb.Session]]:
            sessions, index = await self._all()
            if node:
                sessions = [s for s in sessions if s.node == node]
            best = max((s.modify_index for s in sessions), default=0)
            return Read(sessions, best or index or 1, index)

        return await blocking_query(self.store, opts, [keys.SESSIONS], read)

    async def invalidate_dead(self) -> list[str]:
        """Leader only: end sessions whose TTL lapsed, node left or check is critical.

        Also, on the first call and every ``RELEASE_SWEEP_INTERVAL`` seconds,
        finishes the releases a crash left half done (``finish_releases``).
        """
        if time.monotonic() >= self._next_release_sweep:
            self._next_release_sweep = time.monotonic() + RELEASE_SWEEP_INTERVAL
            await self.finish_releases()
        sessions, _ = await self._all()
        if not sessions:
            return []
        ttl_entries, _ = await self.store.range(TTL_PREFIX)
        live_ttl = {e.key[len(TTL_PREFIX) :] for e in ttl_entries}
        dead: list[str] = []
        checks_by_node: dict[str, dict[str, int]] = {}
        for s in sessions:
            reason = ""
            if s.HasField("ttl") and duration_seconds(s.ttl) > 0 and s.id not in live_ttl:
                reason = "TTL expired"
            else:
                if s.node not in checks_by_node:
                    node, _ = await self.store.get(keys.node_key(s.node))
                    checks_by_node[s.node] = (
                        {c.check_id: c.status for c in await self._checks(s.node)}
                        if node is not None
                        else {}
                    )
                    if node is None:
                        reason = "node deregistered"
                status = checks_by_node[s.node]
                for check_id in [*s.node_checks, *s.service_checks]:
                    if status.get(check_id, pb.HEALTH_STATUS_CRITICAL) == pb.HEALTH_STATUS_CRITICAL:
                        reason = reason or f"check {check_id} critical or gone"
            if reason:
                await self.destroy(s.id)
                dead.append(s.id)
        return dead
