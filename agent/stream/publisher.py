"""The servers' side of subscriptions: one store feed, fanned out to every subscriber.

``Publisher`` follows the store's change feed with ONE watch (the memory
store's, or the etcd replica's mirror), however many subscribers there are.
Each change is mapped to the topic keys it touches (``payloads.affected``);
a touched key with subscribers is re-read once (``payloads.read_value``: a
change to service ``web`` becomes the new health entries of ``web``, once)
and the new value is published into that topic's table, waking only the
subscribers of that key. Keys nobody subscribes to cost nothing.

The buffer: events are whole values, so the buffer shared by a topic's
subscribers keeps, per subscribed key, only the latest event (older ones are
superseded: a resume never needs them). A key's slot lives while it has
subscribers; slots are bounded by ``max_keys``.

A subscriber (``subscribe``) gets:

- ``index`` 0: the snapshot (one event), then an end-of-snapshot marker;
- ``index`` at or below the key's current index (resume, e.g. after failing
  over from another server): a heartbeat, then the newer value if any;
- ``index`` above it (this server's store is behind or was reset):
  new-snapshot-to-follow, the snapshot, end-of-snapshot;

then change events as they come, and a heartbeat every ``heartbeat`` seconds
of quiet. Every message carries ``known_leader`` and ``position`` (the store
index the publisher had processed: the subscriber is current up to it). A
subscriber that goes away (the client disconnects: the handler is
cancelled) is detached in ``finally``; nothing of it is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from agent.errors import ConsulError, StoreError, Unavailable
from agent.state import keys
from agent.state.catalog import Catalog
from agent.state.kv import KVState
from agent.store import CompactedError, Store
from agent.stream.payloads import TopicKey, affected, read_value, topic_key
from agent.tasks import Background
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["HEARTBEAT", "Publisher", "PublisherStats"]

logger = logging.getLogger(__name__)

#: Quiet time after which a subscriber gets a heartbeat: it is how a view
#: learns its server is still there and whether a leader is known.
HEARTBEAT = 5.0
#: Subscribed keys at most (one slot per key, shared by its subscribers).
MAX_KEYS = 100_000
_CLOSE_TIMEOUT = 2.0


@dataclass(slots=True)
class _Slot:
    """One subscribed topic key: its latest value and who waits for the next."""

    subscribers: int = 0
    latest: spb.Event | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, event: spb.Event) -> bool:
        """Keep ``event`` if it is newer; wake this key's subscribers. Whether it was."""
        if self.latest is not None and event.index <= self.latest.index:
            return False
        self.latest = event
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()
        return True


@dataclass(slots=True)
class PublisherStats:
    """Counters of one server's publisher."""

    subscribers: int = 0  # open subscriptions now
    subscriptions: int = 0  # ever opened
    events: int = 0  # values published (each fanned out to its key's subscribers)
    sent: int = 0  # stream messages sent
    snapshots: int = 0  # snapshots served
    resumes: int = 0  # subscriptions resumed without a snapshot
    new_snapshots: int = 0  # "new snapshot follows" sent
    feed_resets: int = 0  # store feed restarted (compaction, errors)


class Publisher:
    """Publishes store changes to subscribers; an async context manager."""

    def __init__(
        self,
        reader: Store,
        catalog: Catalog,
        kv: KVState,
        *,
        known_leader: Callable[[], bool] = lambda: True,
        heartbeat: float = HEARTBEAT,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.reader = reader
        self.catalog = catalog
        self.kv = kv
        self.known_leader = known_leader
        self.heartbeat = heartbeat
        self.max_keys = max_keys
        self.stats = PublisherStats()
        #: The store index up to which every subscribed value is published.
        self.position = 0
        self._slots: dict[TopicKey, _Slot] = {}
        self._kv_prefixes: dict[str, int] = {}
        self._dirty: set[TopicKey] = set()
        self._seen = 0
        self._kick = asyncio.Event()
        self._loops = Background("stream-publisher")
        self._closing = False

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        _, self.position = await self.reader.get(keys.IDX_NODES)
        self._seen = self.position
        self._loops.spawn(self._follow(), "stream-feed")
        self._loops.spawn(self._apply(), "stream-apply")

    async def aclose(self) -> None:
        """End every subscription (its client resubscribes elsewhere), then the feed."""
        self._closing = True
        for slot in self._slots.values():
            slot.changed.set()
        await self._loops.aclose(_CLOSE_TIMEOUT)

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the feed --------------------------------------------------------

    async def _follow(self) -> None:
        """One watch of the whole store; a gap (compaction, error) re-reads every slot."""
        backoff = 0.05
        while True:
            try:
                async for event in self.reader.watch("", self._seen + 1):
                    self._seen = max(self._seen, event.index)
                    for tk in affected(event.key, self._kv_prefixes):
                        if tk in self._slots:
                            self._dirty.add(tk)
                    self._kick.set()
                    backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (CompactedError, StoreError) as exc:
                logger.info("publisher feed restarting error=%s", exc)
            except Exception:
                logger.exception("publisher feed failed; restarting")
            self.stats.feed_resets += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            with contextlib.suppress(Exception):
                _, self._seen = await self.reader.get(keys.IDX_NODES)
            self._dirty |= set(self._slots)
            self._kick.set()

    async def _apply(self) -> None:
        """Re-read each touched key once per batch of changes, then publish it."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            await asyncio.sleep(0)  # let the feed drain the rest of a transaction
            upto = self._seen
            dirty, self._dirty = self._dirty, set()
            failed = False
            for tk in sorted(dirty):
                if tk not in self._slots:
                    continue
                try:
                    self._publish(tk, await read_value(self.catalog, self.kv, tk, fresh=False))
                except asyncio.CancelledError:
                    raise
                except ConsulError as exc:
                    logger.warning("publisher read failed key=%s error=%s", tk, exc)
                    self._dirty.add(tk)
                    failed = True
            if failed:
                await asyncio.sleep(0.1)
                self._kick.set()
                continue
            self.position = max(self.position, upto)

    def _publish(self, tk: TopicKey, event: spb.Event) -> None:
        slot = self._slots.get(tk)
        if slot is None or not slot.publish(event):
            return
        self.stats.events += 1

    # -- subscribers -----------------------------------------------------

    def _attach(self, tk: TopicKey) -> _Slot:
        slot = self._slots.get(tk)
        if slot is None:
            if len(self._slots) >= self.max_keys:
                raise Unavailable("Too many subscribed keys on this server; retry elsewhere")
            slot = self._slots[tk] = _Slot()
            if tk.topic == spb.TOPIC_KV_PREFIX:
                self._kv_prefixes[tk.key] = self._kv_prefixes.get(tk.key, 0) + 1
        slot.subscribers += 1
        self.stats.subscribers += 1
        self.stats.subscriptions += 1
        return slot

    def _detach(self, tk: TopicKey) -> None:
        self.stats.subscribers -= 1
        slot = self._slots.get(tk)
        if slot is None:
            return
        slot.subscribers -= 1
        if slot.subscribers <= 0:
            del self._slots[tk]
            if tk.topic == spb.TOPIC_KV_PREFIX:
                left = self._kv_prefixes.pop(tk.key, 1) - 1
                if left > 0:
                    self._kv_prefixes[tk.key] = left

    def slots(self) -> dict[TopicKey, int]:
        """Subscribers per subscribed topic key (introspection)."""
        return {tk: s.subscribers for tk, s in self._slots.items()}

    def _message(self, **kwargs: object) -> spb.SubscribeResponse:
        self.stats.sent += 1
        return spb.SubscribeResponse(
            known_leader=self.known_leader(),
            position=self.position,
            **kwargs,  # type: ignore[arg-type]
        )

    async def subscribe(self, req: spb.SubscribeRequest) -> AsyncIterator[spb.SubscribeResponse]:
        """The stream of one subscription (see the module docstring)."""
        tk = topic_key(req)
        if self._closing:
            raise Unavailable("server shutting down")
        slot = self._attach(tk)
        try:
            current = await read_value(self.catalog, self.kv, tk, fresh=True)
            slot.publish(current)
            latest = slot.latest or current
            if req.index and req.index <= latest.index:
                self.stats.resumes += 1
                yield self._message(heartbeat=spb.Heartbeat(index=req.index))
                sent = req.index
            else:
                if req.index:
                    self.stats.new_snapshots += 1
                    yield self._message(new_snapshot_to_follow=spb.NewSnapshotToFollow())
                self.stats.snapshots += 1
                batch = spb.EventBatch(index=latest.index, events=[latest])
                yield self._message(snapshot=batch)
                yield self._message(end_of_snapshot=spb.EndOfSnapshot(index=latest.index))
                sent = latest.index
            while True:
                if self._closing:
                    raise Unavailable("server shutting down")
                event = slot.latest
                if event is not None and event.index > sent:
                    sent = event.index
                    yield self._message(events=spb.EventBatch(index=sent, events=[event]))
                    continue
                changed = slot.changed
                try:
                    async with asyncio.timeout(self.heartbeat):
                        await changed.wait()
                except TimeoutError:
                    yield self._message(heartbeat=spb.Heartbeat(index=sent))
        finally:
            self._detach(tk)
