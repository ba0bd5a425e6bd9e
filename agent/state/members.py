"""Membership on the store, in place of Serf's gossip.

Each member has a record ``members/<pool>/<name>`` (a ``Member`` message with its
status and the time the status last changed) and, while it heartbeats, a key
``alive/<pool>/<name>`` bound to a lease whose TTL is the suspect timeout. A
heartbeat renews the lease; a member that stops heartbeating loses its alive
key when the lease runs out, and the leader then marks it FAILED; a FAILED or
LEFT member is reaped (its record deleted) after the reconnect timeout. The
pool is ``lan`` (the datacenter's agents) or ``wan`` (servers of every
datacenter).
"""

from __future__ import annotations

import math
import time

from google.protobuf.timestamp_pb2 import Timestamp

from agent.errors import InvalidArgument, NotFound
from agent.state import keys
from agent.store import Compare, Delete, Entry, Put, Store
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["Members", "load_member", "now_ts"]

ALIVE = mpb.MEMBER_STATUS_ALIVE
LEFT = mpb.MEMBER_STATUS_LEFT
FAILED = mpb.MEMBER_STATUS_FAILED
MAX_NAME = 256


def now_ts(now: float | None = None) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int((time.time() if now is None else now) * 1e9))
    return ts


def load_member(entry: Entry) -> mpb.Member:
    return mpb.Member.FromString(entry.value)


def validate_member(member: mpb.Member) -> None:
    if not member.name or len(member.name) > MAX_NAME:
        raise InvalidArgument(f"Member name must be 1 to {MAX_NAME} characters")
    if not member.address or ":" not in member.address:
        raise InvalidArgument(f"Member address must be host:port, got {member.address!r}")
    if not member.datacenter:
        raise InvalidArgument("Member datacenter is required")
    if member.role not in (mpb.MEMBER_ROLE_SERVER, mpb.MEMBER_ROLE_NODE):
        raise InvalidArgument(f"Unknown member role {member.role}")


class Members:
    """One membership pool of one datacenter's store."""

    def __init__(
        self,
        store: Store,
        pool: str = "lan",
        *,
        suspect_timeout: float = 10.0,
        reconnect_timeout: float = 72 * 3600.0,
    ) -> None:
        self.store = store
        self.pool = pool
        self.suspect_timeout = suspect_timeout
        self.reconnect_timeout = reconnect_timeout

    @property
    def prefix(self) -> str:
        return f"{keys.MEMBERS}{self.pool}/"

    @property
    def alive_prefix(self) -> str:
        return f"{keys.ALIVE}{self.pool}/"

    async def join(self, member: mpb.Member) -> int:
        """Record ``member`` as alive with a fresh lease; the lease ID."""
        validate_member(member)
        lease = await self.store.grant_lease(max(1, math.ceil(self.suspect_timeout)))
        old, _ = await self.store.get(keys.alive_key(self.pool, member.name))
        record = mpb.Member()
        record.CopyFrom(member)
        record.status = ALIVE
        current, _ = await self.store.get(keys.member_key(self.pool, member.name))
        if current is not None:
            prev = load_member(current)
            if prev.status == ALIVE:
                record.status_time.CopyFrom(prev.status_time)
        if not record.HasField("status_time"):
            record.status_time.CopyFrom(now_ts())
        await self.store.txn(
            [],
            [
                Put(keys.member_key(self.pool, member.name), record.SerializeToString()),
                Put(keys.alive_key(self.pool, member.name), b"", lease=lease),
            ],
        )
        if old is not None and old.lease and old.lease != lease:
            await self.store.revoke_lease(old.lease)
        return lease

    async def heartbeat(self, name: str) -> bool:
        """Renew ``name``'s lease; False when it is unknown or has lapsed (join again)."""
        alive, _ = await self.store.get(keys.alive_key(self.pool, name))
        if alive is None or not alive.lease:
            return False
        return await self.store.keepalive(alive.lease)

    async def leave(self, name: str) -> None:
        """Mark ``name`` LEFT and end its liveness."""
        current, _ = await self.store.get(keys.member_key(self.pool, name))
        if current is None:
            raise NotFound(f"Unknown member {name!r}")
        record = load_member(current)
        record.status = LEFT
        record.status_time.CopyFrom(now_ts())
        alive, _ = await self.store.get(keys.alive_key(self.pool, name))
        await self.store.txn(
            [],
            [
                Put(keys.member_key(self.pool, name), record.SerializeToString()),
                Delete(keys.alive_key(self.pool, name)),
            ],
        )
        if alive is not None and alive.lease:
            await self.store.revoke_lease(alive.lease)

    async def list(self) -> tuple[list[mpb.Member], int]:
        entries, index = await self.store.range(self.prefix)
        return [load_member(e) for e in entries], index

    async def reconcile_liveness(self, now: float | None = None) -> int:
        """Leader only: FAILED for silent members, REAP after the reconnect timeout.

        Returns the store index the pass read at.
        """
        now = time.time() if now is None else now
        entries, index = await self.store.range(self.prefix)
        alive, _ = await self.store.range(self.alive_prefix)
        alive_names = {keys.name_of(e.key) for e in alive}
        for entry in entries:
            member = load_member(entry)
            if member.status == ALIVE and member.name not in alive_names:
                member.status = FAILED
                member.status_time.CopyFrom(now_ts(now))
                await self.store.txn(
                    [Compare(entry.key, entry.modify_index)],
                    [Put(entry.key, member.SerializeToString())],
                )
            elif member.status in (FAILED, LEFT):
                since = member.status_time.ToNanoseconds() / 1e9
                if now - since >= self.reconnect_timeout:
                    await self.store.txn(
                        [Compare(entry.key, entry.modify_index)], [Delete(entry.key)]
                    )
        return index
