"""Server side of WatchMembers: one store watch, fanned out to every stream.

The hub keeps the current member list of one pool, fed by a single watch on
``members/<pool>/``, and turns each change into a Serf-like event (JOIN,
UPDATE, LEAVE, FAILED, REAP). A subscriber gets the snapshot and its queue in
one step (no await in between), so it never misses or repeats a change. With
500 streams there is still one store watch; a slow subscriber whose queue
fills up is dropped (its stream ends and the client reconnects for a fresh
snapshot) rather than holding everyone back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agent.state import keys
from agent.state.members import load_member
from agent.store import CompactedError, Event, Store
from agent.tasks import Background
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["MemberHub", "Subscription"]

logger = logging.getLogger(__name__)

SNAPSHOT = mpb.MEMBER_EVENT_TYPE_SNAPSHOT
JOIN = mpb.MEMBER_EVENT_TYPE_JOIN
UPDATE = mpb.MEMBER_EVENT_TYPE_UPDATE
LEAVE = mpb.MEMBER_EVENT_TYPE_LEAVE
FAILED = mpb.MEMBER_EVENT_TYPE_FAILED
REAP = mpb.MEMBER_EVENT_TYPE_REAP
_QUEUE_LIMIT = 4096


@dataclass(slots=True)
class Subscription:
    """One stream's view: the snapshot it starts from and the changes after it."""

    snapshot: mpb.WatchMembersResponse
    queue: asyncio.Queue[mpb.WatchMembersResponse | None]


def classify(prev: mpb.Member | None, new: mpb.Member) -> mpb.MemberEventType.ValueType:
    """The event a put of ``new`` over ``prev`` means."""
    if new.status == mpb.MEMBER_STATUS_LEFT:
        return LEAVE
    if new.status == mpb.MEMBER_STATUS_FAILED:
        return FAILED
    if prev is None or prev.status != mpb.MEMBER_STATUS_ALIVE:
        return JOIN
    return UPDATE


class MemberHub:
    """Fan-out of one pool's membership changes."""

    def __init__(self, store: Store, pool: str = "lan") -> None:
        self.store = store
        self.pool = pool
        self.members: dict[str, mpb.Member] = {}
        self.index = 0
        self.events = 0
        self._subs: set[asyncio.Queue[mpb.WatchMembersResponse | None]] = set()
        self._loops = Background(f"member-hub-{pool}")
        self._ready = asyncio.Event()

    @property
    def prefix(self) -> str:
        return f"{keys.MEMBERS}{self.pool}/"

    async def start(self) -> None:
        self._loops.spawn(self._run(), f"member-hub-{self.pool}")
        await asyncio.wait_for(self._ready.wait(), 30)

    async def aclose(self) -> None:
        await self._loops.aclose()
        for queue in list(self._subs):
            queue.put_nowait(None)
        self._subs.clear()

    def subscribe(self) -> Subscription:
        queue: asyncio.Queue[mpb.WatchMembersResponse | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._subs.add(queue)
        snapshot = mpb.WatchMembersResponse(
            type=SNAPSHOT,
            members=sorted(self.members.values(), key=lambda m: m.name),
            index=max(1, self.index),
        )
        return Subscription(snapshot, queue)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub.queue)

    async def stream(self) -> AsyncIterator[mpb.WatchMembersResponse]:
        """Snapshot, then every change, until the hub closes or the caller stops."""
        sub = self.subscribe()
        try:
            yield sub.snapshot
            while True:
                item = await sub.queue.get()
                if item is None:
                    return
                yield item
        finally:
            self.unsubscribe(sub)

    def _publish(self, message: mpb.WatchMembersResponse) -> None:
        self.events += 1
        for queue in list(self._subs):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning("membership subscriber too slow; dropping its stream")
                self._subs.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def _apply(self, event: Event) -> None:
        name = keys.name_of(event.key)
        self.index = max(self.index, event.index)
        if event.kind == "delete" or event.entry is None:
            prev = self.members.pop(name, None)
            if prev is not None:
                self._publish(
                    mpb.WatchMembersResponse(type=REAP, members=[prev], index=event.index)
                )
            return
        member = load_member(event.entry)
        prev = self.members.get(name)
        self.members[name] = member
        if prev is not None and prev == member:
            return
        kind = classify(prev, member)
        self._publish(mpb.WatchMembersResponse(type=kind, members=[member], index=event.index))

    async def _load(self) -> int:
        entries, index = await self.store.range(self.prefix)
        fresh = {keys.name_of(e.key): load_member(e) for e in entries}
        # Tell subscribers what changed while we were not watching.
        for name in set(self.members) - set(fresh):
            self._publish(
                mpb.WatchMembersResponse(type=REAP, members=[self.members[name]], index=index)
            )
        for name, member in fresh.items():
            prev = self.members.get(name)
            if prev != member:
                self._publish(
                    mpb.WatchMembersResponse(
                        type=classify(prev, member), members=[member], index=index
                    )
                )
        self.members = fresh
        self.index = index
        return index

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                index = await self._load()
                self._ready.set()
                async for event in self.store.watch(self.prefix, index + 1):
                    self._apply(event)
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except CompactedError:
                continue
            except Exception as exc:  # the store failed: reload after a pause
                logger.warning("member hub: watch failed pool=%s error=%s", self.pool, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


def wan_member(m: mpb.Member) -> mpb.Member:
    """A LAN server as the WAN pool names it: ``<node>.<datacenter>``."""
    out = mpb.Member()
    out.CopyFrom(m)
    out.name = f"{m.name}.{m.datacenter}"
    return out


def _is_server(m: mpb.Member) -> bool:
    return m.role == mpb.MEMBER_ROLE_SERVER


async def wan_view(lan: MemberHub, wan: MemberHub) -> AsyncIterator[mpb.WatchMembersResponse]:
    """This datacenter's WAN view: its own servers (from the LAN pool, renamed
    ``node.dc``) and the remote servers that joined it, as one watch."""
    lan_sub, wan_sub = lan.subscribe(), wan.subscribe()
    merged: asyncio.Queue[mpb.WatchMembersResponse | None] = asyncio.Queue()

    async def pump(sub: Subscription, from_lan: bool) -> None:
        while True:
            item = await sub.queue.get()
            if item is None:
                await merged.put(None)
                return
            if from_lan:
                servers = [wan_member(m) for m in item.members if _is_server(m)]
                if not servers:
                    continue
                # A new message: the hub's is shared by every subscriber's queue.
                item = mpb.WatchMembersResponse(type=item.type, members=servers, index=item.index)
            await merged.put(item)

    tasks = [
        asyncio.create_task(pump(lan_sub, True)),
        asyncio.create_task(pump(wan_sub, False)),
    ]
    try:
        members = {m.name: m for m in wan_sub.snapshot.members}
        members.update(
            {wm.name: wm for wm in map(wan_member, lan_sub.snapshot.members) if _is_server(wm)}
        )
        yield mpb.WatchMembersResponse(
            type=SNAPSHOT,
            members=sorted(members.values(), key=lambda m: m.name),
            index=max(lan_sub.snapshot.index, wan_sub.snapshot.index),
        )
        while True:
            item = await merged.get()
            if item is None:
                return
            yield item
    finally:
        for task in tasks:
            task.cancel()
        lan.unsubscribe(lan_sub)
        wan.unsubscribe(wan_sub)
