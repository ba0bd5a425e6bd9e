"""The durable store: a thin adapter from ``agent.store.base.Store`` to etcd v3.

Every server of a datacenter shares one etcd cluster. The mapping is one to one:

- index = etcd revision (``header.revision``, ``create_revision``, ``mod_revision``);
- ``txn`` = an etcd Txn; ``Compare(key, 0)`` is "version == 0" (absent), any
  other ``Compare(key, n)`` is "mod_revision == n";
- ``wait`` = one etcd watch per prefix from ``after_index + 1``, first event wins;
- leases = etcd leases; ``keepalive`` sends one LeaseKeepAlive request on a
  short-lived stream, so no stream has to live between calls.

Every key lives under ``namespace`` (e.g. ``/consul-grpc/dc1/``), so several
datacenters, or several tests, share one cluster; the namespace is added on
the way in and stripped on the way out.

Every call has a deadline (``timeout``, 5 s by default). etcd failures
(connection refused, deadline, a cancelled watch) are raised as
``agent.errors.StoreError`` naming the endpoints; etcd's "bad request" answers
as ``InvalidArgument``; a put with an unknown lease as ``NotFound``. No etcd3aio
or gRPC exception leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from types import TracebackType
from typing import Any, NoReturn, TypeVar, cast

import grpc
import grpc.aio
from etcd3aio import Etcd3Client, EtcdError, prefix_range_end
from etcd3aio._protobuf import Compare as _EtcdCompare
from etcd3aio.kv import KVService
from etcd3aio.lease import LeaseService
from etcd3aio.watch import WatchService

from agent.errors import InvalidArgument, NotFound, StoreError
from agent.store.base import (
    LAST_WRITE_KEY,
    MAX_TXN_COMPARES,
    MAX_TXN_OPS,
    CompactedError,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    validate_ttl,
    validate_txn,
)

__all__ = ["DEFAULT_TIMEOUT", "EtcdStore", "parse_endpoint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Deadline of one etcd call, connection set-up included.
DEFAULT_TIMEOUT = 5.0

#: etcd delivers the history of a watch that starts in the past from a loop that
#: runs every 100 ms; a ``wait`` that has history to replay waits at least this
#: long for it, even with a shorter timeout, so "at once if that already
#: happened" holds.
_CATCH_UP = 0.5

#: Bound on ``aclose``.
_CLOSE_TIMEOUT = 2.0

_EVENT_DELETE = 1  # mvccpb.Event.EventType.DELETE

#: etcd's default ``--max-txn-ops``, which it checks at each level of a txn.
_ETCD_MAX_TXN_OPS = 128


#: Channel options: reconnect attempts every 0.1 s at first, never more than
#: 1 s apart, so the store follows etcd back within about a second.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

#: Keys per page of a ``range``: 1,000 catalog entries are about 400 KB.
RANGE_PAGE = 1000

#: Largest message from etcd: gRPC's default (4 MiB) is less than one watch
#: response of a full transaction of large values (128 x 1.5 MiB at most).
MAX_RECEIVE_OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``"host:port"`` (optionally ``http://host:port``) as (host, port); InvalidArgument if bad."""
    raw = endpoint.strip()
    if raw.startswith("https://"):
        raise InvalidArgument(f"etcd endpoint {endpoint!r}: TLS is not supported yet")
    raw = raw.removeprefix("http://").rstrip("/")
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(f"etcd endpoint {endpoint!r} is not host:port")
    if host.startswith("["):
        raise InvalidArgument(f"etcd endpoint {endpoint!r}: IPv6 is not supported")
    return host, int(port_text)


class EtcdStore:
    """The etcd ``Store``. Use as ``async with EtcdStore(["127.0.0.1:2379"], "/ns/")``."""

    kind = "etcd"
    max_txn_ops = MAX_TXN_OPS
    max_txn_compares = MAX_TXN_COMPARES

    def __init__(
        self,
        endpoints: Sequence[str],
        namespace: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise InvalidArgument("the etcd store needs at least one endpoint (host:port)")
        if timeout <= 0:
            raise InvalidArgument("etcd timeout must be positive")
        self._endpoints = [parse_endpoint(e) for e in endpoints]
        self._where = ",".join(f"{h}:{p}" for h, p in self._endpoints)
        self._ns = namespace.encode("utf-8", errors="surrogateescape")
        self._timeout = timeout
        self._client: Etcd3Client | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Resolve the endpoints, open the channel and check etcd answers."""
        if self._client is not None:
            return
        targets = [f"{h}:{p}" for h, p in await self._resolve()]
        client = Etcd3Client(targets)
        # gRPC's default reconnect backoff grows to two minutes: after an etcd
        # outage of a few minutes the servers would follow it back only 10+ s
        # after it is healthy. Retry a connection at least every second.
        client._manager.grpc_options += RECONNECT_OPTIONS + MAX_RECEIVE_OPTIONS
        await client.connect()
        self._client = client
        try:
            await self.get("")
        except BaseException:
            self._client = None
            await self._close(client)
            raise
        logger.info("etcd store started endpoints=%s namespace=%s", self._where, self._ns.decode())

    async def aclose(self) -> None:
        """Close the channel (which ends every watch), bounded by a couple of seconds."""
        client, self._client = self._client, None
        if client is not None:
            await self._close(client)

    async def __aenter__(self) -> EtcdStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @staticmethod
    async def _close(client: Etcd3Client) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await client.close()

    async def _resolve(self) -> list[tuple[str, int]]:
        """IPv4 addresses for the endpoints (etcd3aio dials ``ipv4:`` targets only)."""
        loop = asyncio.get_running_loop()
        out: list[tuple[str, int]] = []
        for host, port in self._endpoints:
            if host == "localhost":
                host = "127.0.0.1"
            with contextlib.suppress(ValueError):
                ipaddress.IPv4Address(host)
                out.append((host, port))
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    infos = await loop.getaddrinfo(
                        host, port, family=socket.AF_INET, type=socket.SOCK_STREAM
                    )
            except (OSError, TimeoutError) as exc:
                raise StoreError(f"cannot resolve etcd endpoint {host}:{port}: {exc}") from exc
            out.extend((str(info[4][0]), port) for info in infos[:1])
        return out

    def _services(self) -> tuple[KVService, LeaseService, WatchService]:
        c = self._client
        if c is None or c.kv is None or c.lease is None or c.watch is None:
            raise StoreError("the etcd store is not started")
        return c.kv, c.lease, c.watch

    # -- errors --------------------------------------------------------------

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Await one etcd call, mapping every failure into ``agent.errors``."""
        try:
            return await call
        except (EtcdError, grpc.aio.AioRpcError, TimeoutError) as exc:
            self._fail(what, exc)

    def _fail(self, what: str, exc: BaseException) -> NoReturn:
        if isinstance(exc, TimeoutError):
            raise StoreError(
                f"etcd {what} timed out after {self._timeout:g}s (endpoints {self._where})"
            ) from exc
        if isinstance(exc, grpc.aio.AioRpcError):
            details = exc.details() or exc.code().name
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(f"etcd refused {what}: {details}") from exc
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"etcd {what}: {details}") from exc
            raise StoreError(
                f"etcd {what} failed (endpoints {self._where}): {exc.code().name} {details}"
            ) from exc
        raise StoreError(f"etcd {what} failed (endpoints {self._where}): {exc}") from exc

    # -- keys ----------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self._ns + key.encode("utf-8", errors="surrogateescape")

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
        """etcd's (key, range_end) for every key under ``prefix`` in the namespace."""
        key = self._key(prefix)
        return (key or b"\x00"), prefix_range_end(key)

    def _entry(self, kv: Any) -> Entry:
        return Entry(
            key=self._strip(kv.key),
            value=bytes(kv.value),
            create_index=int(kv.create_revision),
            modify_index=int(kv.mod_revision),
            version=int(kv.version),
            lease=int(kv.lease),
        )

    def _strip(self, key: bytes) -> str:
        return key[len(self._ns) :].decode("utf-8", errors="surrogateescape")

    # -- reads ---------------------------------------------------------------

    async def get(self, key: str) -> tuple[Entry | None, int]:
        kv, _, _ = self._services()
        resp = await self._call("get", kv.get(self._key(key), timeout=self._timeout))
        entry = self._entry(resp.kvs[0]) if resp.kvs else None
        return entry, int(resp.header.revision)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every entry under ``prefix``, read in pages of ``RANGE_PAGE`` keys at one revision.

        One Range of a whole namespace failed past gRPC's 4 MiB message limit
        (issue 16: a server started cold on a catalog of 20,000 instances
        never became ready: "Received message larger than max (7920929 vs.
        4194304)"). Pages are read at the first page's revision, so the
        answer is one consistent snapshot; a page still too large for a
        message is read again in halves.
        """
        kv, _, _ = self._services()
        key, end = self._range(prefix)
        entries: list[Entry] = []
        revision = 0
        limit = RANGE_PAGE
        while True:
            try:
                resp = await kv.get(
                    key, range_end=end, revision=revision, limit=limit, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and limit > 1:
                    limit //= 2
                    continue
                self._fail("range", exc)
            except (EtcdError, TimeoutError) as exc:
                self._fail("range", exc)
            revision = revision or int(resp.header.revision)
            entries += [self._entry(item) for item in resp.kvs]
            if not resp.more or not resp.kvs:
                break
            key = bytes(resp.kvs[-1].key) + b"\x00"
        return [e for e in entries if e.key != LAST_WRITE_KEY], revision

    # -- writes --------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> tuple[bool, int]:
        # Every write also touches LAST_WRITE_KEY, so that one key's modify
        # index says how far this namespace has been written (see last_write_index).
        # Only with a put: a delete of nothing then still takes no index, and a
        # delete always travels with a put in the state layer's transactions.
        covered = any(
            isinstance(op, Delete) and op.prefix and LAST_WRITE_KEY.startswith(op.key) for op in ops
        )
        has_put = any(isinstance(op, Put) for op in ops)
        validate_txn(compares, ops)
        marked = [*ops, Put(LAST_WRITE_KEY, b"")] if has_put and not covered else list(ops)
        kv, _, _ = self._services()
        guards = [self._compare(c) for c in compares]
        # etcd counts every op against --max-txn-ops, nested or not: a full
        # transaction travels without the marker, and the marker follows in a
        # transaction of its own before the write is acknowledged, so a
        # replica's barrier still covers every acknowledged write.
        late_marker = len(marked) > _ETCD_MAX_TXN_OPS
        requests = [self._op(op) for op in (ops if late_marker else marked)]
        # One attempt only: a write that timed out may have been applied.
        resp = await self._call(
            "txn", kv.txn(guards, requests, timeout=self._timeout, max_attempts=1)
        )
        if late_marker and resp.succeeded:
            marker = [self._op(Put(LAST_WRITE_KEY, b""))]
            await self._call("txn", kv.txn([], marker, timeout=self._timeout, max_attempts=1))
        return bool(resp.succeeded), int(resp.header.revision)

    async def last_write_index(self) -> int:
        """The index of the last transaction written in this namespace (0: none).

        etcd's revision is shared by every namespace of a cluster, so a replica
        of one namespace cannot wait for the cluster's revision; it waits for
        this one instead.
        """
        entry, _ = await self.get(LAST_WRITE_KEY)
        return entry.modify_index if entry is not None else 0

    def _compare(self, cmp: Compare) -> Any:
        if cmp.prefix:
            # Ranged compares (etcd 3.3+) hold for every key in [key, range_end).
            start, end = self._range(cmp.key)
            return _EtcdCompare(
                result=_EtcdCompare.LESS,
                target=_EtcdCompare.MOD,
                key=start,
                range_end=end,
                mod_revision=cmp.modify_index + 1,
            )
        key = self._key(cmp.key)
        if cmp.modify_index == 0:
            return KVService.txn_compare_version(key, 0)
        return _EtcdCompare(
            result=_EtcdCompare.EQUAL,
            target=_EtcdCompare.MOD,
            key=key,
            mod_revision=cmp.modify_index,
        )

    def _op(self, op: Op) -> Any:
        if isinstance(op, Put):
            return KVService.txn_op_put(self._key(op.key), op.value, lease=op.lease)
        if op.prefix:
            key, end = self._range(op.key)
            return KVService.txn_op_delete(key, range_end=end)
        return KVService.txn_op_delete(self._key(op.key))

    # -- blocking ------------------------------------------------------------

    async def wait(self, prefixes: Sequence[str], after_index: int, timeout: float) -> bool:
        """True once a key under ``prefixes`` changes after ``after_index``; see ``Store``.

        A read first checks etcd answers (StoreError if not). If etcd goes away
        during the wait, etcd3aio's watches reconnect quietly and the wait ends
        False at its timeout; the caller's next read reports the failure. A
        compacted ``after_index`` answers True: the caller must re-read.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        # A cheap read first: it fails fast when etcd is down (a watch would
        # silently retry), and tells whether there is history to replay.
        _, current = await self.get("")
        if not prefixes:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return False
        if after_index < current:
            deadline = max(deadline, loop.time() + _CATCH_UP)
        elif timeout <= 0:
            return False
        tasks = [
            asyncio.create_task(self._changed(p, after_index + 1), name=f"etcd-wait {p}")
            for p in dict.fromkeys(prefixes)
        ]
        try:
            pending = set(tasks)
            while pending:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task.result():
                        return True
            return False
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _changed(self, prefix: str, start_revision: int) -> bool:
        """True at the first event under ``prefix`` from ``start_revision`` (or a compaction)."""
        _, _, watch = self._services()
        key, end = self._range(prefix)
        stream = cast(
            "AsyncGenerator[Any, None]",
            watch.watch(key, range_end=end, start_revision=start_revision),
        )
        try:
            async with contextlib.aclosing(stream):
                async for resp in stream:
                    if resp.compact_revision > 0 or resp.events:
                        return True
                    if resp.canceled:
                        raise StoreError(
                            f"etcd watch on {prefix!r} cancelled: {resp.cancel_reason}"
                        )
        except (EtcdError, grpc.aio.AioRpcError) as exc:
            self._fail("watch", exc)
        raise StoreError(f"etcd watch on {prefix!r} ended (endpoints {self._where})")

    def watch(
        self, prefix: str, start_index: int, *, include_marker: bool = False
    ) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``start_index`` (0: from the first iteration).

        ``include_marker`` also yields the puts of LAST_WRITE_KEY, which every
        write makes: a replica needs them to know how far it has caught up.
        """
        if start_index < 0:
            raise InvalidArgument(f"watch start index must be >= 0, not {start_index}")
        return self._watch(prefix, start_index, include_marker)

    async def _watch(
        self, prefix: str, start_index: int, include_marker: bool = False
    ) -> AsyncIterator[Event]:
        _, _, watch = self._services()
        if start_index == 0:
            _, current = await self.get("")
            start_index = current + 1
        key, end = self._range(prefix)
        stream = cast(
            "AsyncGenerator[Any, None]",
            watch.watch(key, range_end=end, start_revision=start_index),
        )
        try:
            async with contextlib.aclosing(stream):
                async for resp in stream:
                    if resp.compact_revision > 0:
                        raise CompactedError(int(resp.compact_revision))
                    if resp.canceled:
                        raise StoreError(
                            f"etcd watch on {prefix!r} cancelled: {resp.cancel_reason}"
                        )
                    for ev in resp.events:
                        event = self._event(ev)
                        if include_marker or event.key != LAST_WRITE_KEY:
                            yield event
        except (EtcdError, grpc.aio.AioRpcError) as exc:
            self._fail("watch", exc)

    def _event(self, ev: Any) -> Event:
        index = int(ev.kv.mod_revision)
        key = self._strip(ev.kv.key)
        if ev.type == _EVENT_DELETE:
            return Event("delete", key, index)
        return Event("put", key, index, self._entry(ev.kv))

    # -- leases --------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        validate_ttl(ttl)
        _, lease, _ = self._services()
        resp = await self._call(
            "lease grant", lease.grant(ttl, timeout=self._timeout, max_attempts=1)
        )
        if resp.error:
            raise StoreError(f"etcd lease grant failed: {resp.error}")
        return int(resp.ID)

    async def keepalive(self, lease: int) -> bool:
        if lease <= 0:
            return False
        _, leases, _ = self._services()
        stream = leases.keep_alive(lease)
        try:
            async with asyncio.timeout(self._timeout):
                async for resp in stream:
                    return int(resp.TTL) > 0
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            self._fail("lease keepalive", exc)
        finally:
            stream.cancel()
        raise StoreError(f"etcd lease keepalive got no answer (endpoints {self._where})")

    async def revoke_lease(self, lease: int) -> None:
        if lease <= 0:
            return
        _, leases, _ = self._services()
        try:
            await self._call("lease revoke", leases.revoke(lease, timeout=self._timeout))
        except NotFound:
            return  # already expired or revoked
