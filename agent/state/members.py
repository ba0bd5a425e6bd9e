"""Membership on the store, in place of Serf's gossip.

Each member has a record ``members/<pool>/<name>`` (a ``Member`` message with its
status and the time the status last changed) and, while it heartbeats, a key
``alive/<pool>/<name>``. The leader marks a member whose alive key is gone
FAILED; a FAILED or LEFT member is reaped (its record deleted) after the
reconnect timeout. The pool is ``lan`` (the datacenter's agents) or ``wan``
(servers of every datacenter).

Heartbeats are batched per server, so they cost no store write (with 5,000
members heartbeating every 2.5 s, one write or lease renewal each was 2,000
etcd operations a second). Each server's ``Members`` holds ONE lease (TTL: the
suspect timeout) and binds to it the alive key of every member that
heartbeats to it; a heartbeat only checks that the key is still as this server
bound it (a local read on a server, whose ``store`` is its replica) and stamps
the member in the server's table. A
loop (once started) renews the lease every third of its TTL and, every
quarter of the suspect timeout, deletes the alive key of each member of its
table not heard from for a suspect timeout (guarded by the index it bound the
key at: a member that moved to another server, which re-bound the key, is left
alone). A member heard for the first time by this server (a join, or a
failover from another server) has its key (re-)bound to this server's lease,
one write. If the server dies, its lease runs out after the suspect timeout;
its members have failed over (one heartbeat interval, a quarter of that) and
re-bound their keys before. Without ``start`` (tests, tools), the lease is
taken on first use and simply not renewed: silence then fails members as the
TTL runs out.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import time
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from agent.errors import InvalidArgument, NotFound
from agent.state import keys
from agent.store import Compare, Delete, Entry, Put, Store
from agent.tasks import Background
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["Members", "load_member", "now_ts"]

ALIVE = mpb.MEMBER_STATUS_ALIVE
LEFT = mpb.MEMBER_STATUS_LEFT
FAILED = mpb.MEMBER_STATUS_FAILED
MAX_NAME = 256
#: Alive keys re-bound per store transaction when a lease was lost.
REBIND_CHUNK = 64

logger = logging.getLogger(__name__)


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
        #: Members heartbeating to this server: name -> (monotonic time last
        #: heard, index at which we bound their alive key to our lease).
        self.heard: dict[str, tuple[float, int]] = {}
        # Decoded member records by key, with the index they were decoded at:
        # a pass over 5,000 unchanged members decodes none of them.
        self._decoded: dict[str, tuple[int, mpb.Member]] = {}
        self._lease = 0
        self._lease_lock = asyncio.Lock()
        #: Binds waiting for the next transaction (see ``_bind``).
        self._pending_binds: dict[str, asyncio.Future[int]] = {}
        self._bind_lock = asyncio.Lock()
        self._loops = Background(f"liveness-{pool}")

    @property
    def ttl(self) -> int:
        return max(1, math.ceil(self.suspect_timeout))

    async def start(self) -> None:
        """Take this server's lease and keep it (and the table) up to date."""
        await self._our_lease()
        self._loops.spawn(self._keep(), f"liveness-{self.pool}")

    async def aclose(self) -> None:
        await self._loops.aclose()

    async def _our_lease(self) -> int:
        async with self._lease_lock:
            if not self._lease:
                self._lease = await self.store.grant_lease(self.ttl)
            return self._lease

    async def _keep(self) -> None:
        renew_every = self.ttl / 3
        sweep_every = max(0.25, self.suspect_timeout / 4)
        next_renew = next_sweep = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, min(next_renew, next_sweep) - time.monotonic()))
            now = time.monotonic()
            try:
                if now >= next_renew:
                    next_renew = now + renew_every
                    if not await self.store.keepalive(self._lease):
                        logger.warning("liveness lease lost pool=%s; binding again", self.pool)
                        await self._rebind_all()
                if now >= next_sweep:
                    next_sweep = now + sweep_every
                    await self._sweep(now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("liveness upkeep failed pool=%s error=%s", self.pool, exc)

    async def _rebind_all(self) -> None:
        async with self._lease_lock:
            self._lease = await self.store.grant_lease(self.ttl)
        names = list(self.heard)
        for i in range(0, len(names), REBIND_CHUNK):
            chunk = names[i : i + REBIND_CHUNK]
            _, index = await self.store.txn(
                [], [Put(keys.alive_key(self.pool, n), b"", lease=self._lease) for n in chunk]
            )
            for n in chunk:
                if n in self.heard:
                    self.heard[n] = (self.heard[n][0], index)

    async def _sweep(self, now: float) -> None:
        """Unbind the members of our table that went silent for a suspect timeout."""
        silent = [n for n, (t, _) in self.heard.items() if now - t >= self.suspect_timeout]
        for name in silent:
            _, bound = self.heard.pop(name)
            key = keys.alive_key(self.pool, name)
            # Only if the key is still ours: a member that moved to another
            # server had its key re-bound there at a later index.
            await self.store.txn([Compare(key, bound)], [Delete(key)])

    async def _bind(self, name: str) -> int:
        """Bind ``name``'s alive key to our lease; the index of the write.

        Binds asked while one is being written share the next transaction
        (``REBIND_CHUNK`` keys each): when a server dies, its members (1,667
        of 5,000) fail over together, and one transaction each made the
        heartbeats after a leader kill wait seconds (p99 3.5 s at 2,500).
        """
        fut = self._pending_binds.get(name)
        if fut is None:
            fut = self._pending_binds[name] = asyncio.get_running_loop().create_future()
        async with self._bind_lock:
            if not fut.done():
                await self._flush_binds()
        return fut.result()

    async def _flush_binds(self) -> None:
        await asyncio.sleep(0)  # let the binds of this loop iteration join the batch
        batch, self._pending_binds = self._pending_binds, {}
        try:
            lease = await self._our_lease()
            names = list(batch)
            for i in range(0, len(names), REBIND_CHUNK):
                chunk = names[i : i + REBIND_CHUNK]
                _, index = await self.store.txn(
                    [], [Put(keys.alive_key(self.pool, n), b"", lease=lease) for n in chunk]
                )
                now = time.monotonic()
                for n in chunk:
                    self.heard[n] = (now, index)
                    batch[n].set_result(index)
        except Exception as exc:
            for f in batch.values():
                if not f.done():
                    f.set_exception(exc)
            raise
        finally:  # cancelled: whoever binds next writes the rest
            for n, f in batch.items():
                if not f.done():
                    self._pending_binds.setdefault(n, f)

    @property
    def prefix(self) -> str:
        return f"{keys.MEMBERS}{self.pool}/"

    @property
    def alive_prefix(self) -> str:
        return f"{keys.ALIVE}{self.pool}/"

    async def join(self, member: mpb.Member) -> int:
        """Record ``member`` as alive, its alive key bound to this server's lease;
        the store index of the write."""
        validate_member(member)
        lease = await self._our_lease()
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
        _, index = await self.store.txn(
            [],
            [
                Put(keys.member_key(self.pool, member.name), record.SerializeToString()),
                Put(keys.alive_key(self.pool, member.name), b"", lease=lease),
            ],
        )
        self.heard[member.name] = (time.monotonic(), index)
        return index

    async def heartbeat(self, name: str) -> bool:
        """``name`` is alive; False when it is unknown, failed or left (join again).

        Costs one read (local on a server: its replica) when this server
        still holds the member's alive key, i.e. the key is as we bound it;
        otherwise (a failover from another server, or back) one more read and
        one write, binding the key to this server's lease.
        """
        known = self.heard.get(name)
        if known is not None:
            alive, _ = await self.store.get(keys.alive_key(self.pool, name))
            if alive is not None and alive.modify_index == known[1]:
                self.heard[name] = (time.monotonic(), known[1])
                return True
        current, _ = await self.store.get(keys.member_key(self.pool, name))
        if current is None or load_member(current).status != ALIVE:
            self.heard.pop(name, None)
            return False
        await self._bind(name)
        return True

    async def leave(self, name: str, *, prune: bool = False) -> None:
        """Mark ``name`` LEFT and end its liveness; ``prune`` removes it from the list
        at once (``force-leave -prune``), as the reap after the reconnect timeout does."""
        current, _ = await self.store.get(keys.member_key(self.pool, name))
        if current is None:
            raise NotFound(f"Unknown member {name!r}")
        record = load_member(current)
        record.status = LEFT
        record.status_time.CopyFrom(now_ts())
        self.heard.pop(name, None)
        await self.store.txn(
            [],
            [
                Put(keys.member_key(self.pool, name), record.SerializeToString()),
                Delete(keys.alive_key(self.pool, name)),
            ],
        )
        if prune:
            await self.store.txn([], [Delete(keys.member_key(self.pool, name))])

    async def list(self) -> tuple[Sequence[mpb.Member], int]:
        """Every member record, by name (shared, read-only messages), and the index."""
        entries, index = await self.store.range(self.prefix)
        return self._members_of(entries), index

    def _members_of(self, entries: Sequence[Entry]) -> Sequence[mpb.Member]:
        out: builtins.list[mpb.Member] = []
        decoded = self._decoded
        for e in entries:
            hit = decoded.get(e.key)
            if hit is None or hit[0] != e.modify_index:
                hit = (e.modify_index, load_member(e))
                decoded[e.key] = hit
            out.append(hit[1])
        if len(decoded) > len(entries):
            live = {e.key for e in entries}
            for key in [k for k in decoded if k not in live]:
                del decoded[key]
        return out

    async def reconcile_liveness(self, now: float | None = None) -> int:
        """Leader only: FAILED for silent members, REAP after the reconnect timeout.

        Returns the store index the pass read at.
        """
        now = time.time() if now is None else now
        entries, index = await self.store.range(self.prefix)
        alive, _ = await self.store.range(self.alive_prefix)
        alive_names = {keys.name_of(e.key) for e in alive}
        for entry, cached in zip(entries, self._members_of(entries), strict=True):
            if cached.status == ALIVE and cached.name not in alive_names:
                member = mpb.Member()
                member.CopyFrom(cached)
                member.status = FAILED
                member.status_time.CopyFrom(now_ts(now))
                # Guarded: the record unchanged and still no alive key (a
                # heartbeat may have bound one since the read).
                await self.store.txn(
                    [
                        Compare(entry.key, entry.modify_index),
                        Compare(keys.alive_key(self.pool, member.name), 0),
                    ],
                    [Put(entry.key, member.SerializeToString())],
                )
            elif cached.status in (FAILED, LEFT):
                since = cached.status_time.ToNanoseconds() / 1e9
                if now - since >= self.reconnect_timeout:
                    await self.store.txn(
                        [Compare(entry.key, entry.modify_index)], [Delete(entry.key)]
                    )
        return index
