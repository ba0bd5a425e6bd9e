"""One materialized view: the value of one (datacenter, topic, key), kept current by a stream.

A ``View`` holds the last value a server published for its key (the whole,
unfiltered value: see ``agent.stream.payloads``) and its index. ``run`` keeps
one subscription open through ``source`` (on a client agent, ``Client.stream``
through the router: a transport failure rotates the server away, so the next
subscription goes to the next server; that is the failover). A broken stream
resubscribes with the view's index: the server resumes (a heartbeat, then
what changed) or sends a new snapshot, which replaces the value only when its
end marker arrives. Readers are woken only when the data or its index moved.

Freshness as Consul's headers tell it: ``last_contact`` is 0 while the stream
is up and grows from the moment it broke; a view down for longer than the hold
timeout (``rpc_hold_timeout``) refuses reads with the error its last
subscription attempt got (``No known Consul servers``, an ``rpc error``...),
the same a forwarded read gives. ``index`` never goes backwards: if a new
snapshot (a store that was reset) changes the data at a lower index, the view
answers ``index + 1``, so a blocking reader still wakes.

Answers: ``answers`` caches, per request variant, the response built from the
current version of the data (and its rendered bytes per format), so a repeated
read neither rebuilds nor re-serializes (see ``agent.views.invoker``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from google.protobuf.message import Message

from agent.errors import ConsulError, NoLeader, StoreError, Unavailable
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["Answer", "Source", "View", "ViewKey", "ViewStats"]

logger = logging.getLogger(__name__)

#: Answer variants kept per view (request shapes: tags, passing, filters...).
MAX_ANSWERS = 64
_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0


class Source(Protocol):
    """Opens one subscription (``Client.stream`` on a client agent; in-process on a server)."""

    def __call__(self, request: spb.SubscribeRequest) -> AsyncIterator[spb.SubscribeResponse]: ...


class ViewKey(NamedTuple):
    """What a view follows (a tuple: built and hashed on every read, so kept cheap)."""

    datacenter: str
    topic: int
    key: str


@dataclass(slots=True)
class ViewStats:
    """Counters of one view."""

    events: int = 0  # values applied
    resets: int = 0  # new snapshots received after the first
    subscribes: int = 0  # subscriptions opened (1 + resubscriptions)
    failures: int = 0  # subscriptions that broke


@dataclass(slots=True)
class Answer:
    """One read variant's response at one data version, and its renderings."""

    version: int
    response: Message
    created: float
    rendered: dict[str, bytes] = field(default_factory=dict)
    view: View | None = None


def _transient(error: ConsulError) -> bool:
    """Whether a forwarded read would have retried after ``error`` (a transport
    failure, no leader yet, the store's outage): then the view waits out the hold."""
    return type(error) is Unavailable or isinstance(error, NoLeader | StoreError)


class View:
    """See the module docstring. ``run`` is started by the owning ``ViewStore``."""

    def __init__(
        self,
        key: ViewKey,
        source: Source,
        *,
        hold_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.key = key
        self.source = source
        self.hold_timeout = hold_timeout
        self._clock = clock
        self._rng = rng or random.Random()
        self.value: spb.Event | None = None
        self.index = 0
        #: Bumped whenever what a reader would see changes.
        self.version = 0
        self.known_leader = False
        #: The store index the server had published up to at its last message.
        self.position = 0
        self.connected = False
        self.down_since: float | None = None
        self.error: ConsulError | None = None
        self.ready = False
        self.last_read = clock()
        #: Blocking reads waiting on this view now (an idle reaper spares it).
        self.waiting = 0
        self.stats = ViewStats()
        self.answers: OrderedDict[bytes, Answer] = OrderedDict()
        self._changed = asyncio.Event()
        self._value_bytes = b""
        self._staged: spb.Event | None = None

    # -- the subscription ------------------------------------------------

    def request(self) -> spb.SubscribeRequest:
        return spb.SubscribeRequest(
            topic=self.key.topic,  # type: ignore[arg-type]
            key=self.key.key,
            datacenter=self.key.datacenter,
            index=self.index,
        )

    async def run(self) -> None:
        """Keep the view subscribed until cancelled (see the module docstring)."""
        backoff = _BACKOFF_START
        while True:
            self.stats.subscribes += 1
            try:
                async for message in self.source(self.request()):
                    self._on_message(message)
                    backoff = _BACKOFF_START
                raise Unavailable("subscription ended by the server")
            except asyncio.CancelledError:
                raise
            except ConsulError as exc:
                self._lost(exc)
            except Exception as exc:
                logger.exception("view subscription failed view=%s", self.key)
                self._lost(Unavailable(f"rpc error: {type(exc).__name__}"))
            await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.0))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _lost(self, exc: ConsulError) -> None:
        self.stats.failures += 1
        self.error = exc
        if self.connected or self.down_since is None:
            self.down_since = self._clock()
        if self.connected:
            logger.info("view stream lost view=%s error=%s", self.key, exc.message)
        self.connected = False
        self._wake()

    def _on_message(self, message: spb.SubscribeResponse) -> None:
        if not self.connected:
            self.connected = True
            self.down_since = None
            self.error = None
        if message.known_leader != self.known_leader:
            self.known_leader = message.known_leader
            self._bump()
        self.position = max(self.position, message.position)
        kind = message.WhichOneof("message")
        if kind == "snapshot":
            if message.snapshot.events:
                self._staged = message.snapshot.events[-1]
        elif kind == "end_of_snapshot":
            staged, self._staged = self._staged, None
            if staged is not None:
                self._apply(staged, snapshot=True)
            if not self.ready:
                self.ready = True
                self._wake()
        elif kind == "new_snapshot_to_follow":
            self.stats.resets += 1
        elif kind == "events":
            for event in message.events.events:
                self._apply(event, snapshot=False)
        elif kind == "heartbeat" and not self.ready and self.value is not None:
            self.ready = True
            self._wake()

    def _apply(self, event: spb.Event, *, snapshot: bool) -> None:
        """Take ``event`` as the new value; wake readers if the data or index moved."""
        bare = spb.Event()
        bare.CopyFrom(event)
        bare.index = 0
        payload = bare.SerializeToString(deterministic=True)
        same_data = self.value is not None and payload == self._value_bytes
        if event.index <= self.index:
            if same_data or not snapshot:
                return  # old news (a resumed stream repeating itself)
            index = self.index + 1  # changed data at a lower index: a reset store
        else:
            index = event.index
        self.value = event
        self._value_bytes = payload
        self.index = index
        self.stats.events += 1
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        self.answers.clear()
        self._wake()

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    # -- reads -----------------------------------------------------------

    def close(self) -> None:
        """The store dropped this view: whoever still holds it must not trust it."""
        self.connected = False
        self.version += 1
        self.answers.clear()
        self._wake()

    def touch(self) -> None:
        """Count a read now (LRU order and idle expiry)."""
        self.last_read = self._clock()

    def last_contact(self) -> float:
        """Seconds since the view last heard from its server (0 while connected)."""
        if self.connected or self.down_since is None:
            return 0.0
        return max(0.0, self._clock() - self.down_since)

    async def usable(self) -> None:
        """Wait for the first snapshot; raise when the view cannot answer (module docstring)."""
        self.last_read = self._clock()
        if self.ready and (self.connected or self.last_contact() <= self.hold_timeout):
            return
        deadline = self._clock() + self.hold_timeout
        while True:
            if self.ready and (self.connected or self.last_contact() <= self.hold_timeout):
                return
            if self.error is not None and not self.ready and not _transient(self.error):
                # As a forwarded read: an answer that retrying will not change
                # (no server, no path to the datacenter, a refusal) at once.
                raise self.error
            remaining = deadline - self._clock()
            if self.ready and self.down_since is not None:
                remaining = min(remaining, 0.0)
            if remaining <= 0:
                raise self.error or Unavailable("rpc error: no answer from any server")
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    async def wait_index(self, min_index: int, timeout: float) -> None:
        """Return once the index passes ``min_index``, or after ``timeout`` (a blocking read)."""
        if self.index > min_index or timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.waiting += 1
        try:
            while self.index <= min_index:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                changed = self._changed
                try:
                    async with asyncio.timeout(remaining):
                        await changed.wait()
                except TimeoutError:
                    return
        finally:
            self.waiting -= 1
            self.last_read = self._clock()

    def answer(self, variant: bytes) -> Answer | None:
        """The cached answer of ``variant`` at the current version, if any."""
        found = self.answers.get(variant)
        if found is None or found.version != self.version:
            return None
        return found

    def keep_answer(self, variant: bytes, response: Message) -> Answer:
        answer = Answer(self.version, response, self._clock(), view=self)
        self.answers[variant] = answer
        while len(self.answers) > MAX_ANSWERS:
            self.answers.popitem(last=False)
        return answer
