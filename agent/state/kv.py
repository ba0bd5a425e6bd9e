"""The KV store laid out on a store: ``kv/<key>\\x00`` with tombstones.

A delete leaves a tombstone ``kvt/<key>\\x00`` written in the same transaction,
so the index of a prefix (the highest modify index of its keys and tombstones)
moves forward when a key under it is deleted, and a blocking list wakes, as
Consul's KV tombstones do. Check-and-set compares the key's modify index; a
lost CAS is ``CASConflict`` (gRPC ABORTED; HTTP 200 ``false``).

Sessions lock keys (``acquire``/``release``): the pair records the session
and its lock index; a key held by another session is not acquired.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from agent.errors import CASConflict, ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.store import Compare, Delete, Entry, Op, Put, Store
from generated.consul.kv.v1 import kv_pb2

__all__ = ["MAX_KEY_LENGTH", "MAX_VALUE_SIZE", "KVState"]

MAX_VALUE_SIZE = 512 * 1024
MAX_KEY_LENGTH = 4096
_MAX_TRIES = 20

# A callable that says whether a session ID is live (set by the session layer).
SessionCheck = Callable[[str], Awaitable[bool]]


LOCK_DELAY = "lockdelay/"


def tombstone() -> bytes:
    """A tombstone's value: when it was written (for the GC)."""
    return str(time.time()).encode()


def _stamp(value: bytes, default: float) -> float:
    try:
        return float(value.decode() or default)
    except ValueError:
        return default


def _load(entry: Entry) -> kv_pb2.KVPair:
    pair = kv_pb2.KVPair.FromString(entry.value)
    pair.key = keys.kv_name(entry.key)
    pair.create_index = entry.create_index
    pair.modify_index = entry.modify_index
    return pair


def validate_key(key: str, *, allow_empty: bool = False) -> None:
    if not key and not allow_empty:
        raise InvalidArgument("Missing key name")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"Key too long: {len(key.encode())} bytes, at most {MAX_KEY_LENGTH}")
    if "\x00" in key:
        raise InvalidArgument("Key must not contain a NUL byte")


class KVState:
    """KV reads and writes; ``reader`` may be a local replica of ``store``."""

    def __init__(
        self, store: Store, reader: Store | None = None, session_live: SessionCheck | None = None
    ) -> None:
        self.store = store
        self.reader = reader or store
        self.session_live = session_live

    async def _prefix_index(self, prefix: str) -> tuple[int, int]:
        live, store_index = await self.reader.range(keys.KV + prefix)
        dead, _ = await self.reader.range(keys.KV_TOMB + prefix)
        best = max((e.modify_index for e in [*live, *dead]), default=0)
        return best or store_index or 1, store_index

    async def get(self, opts: QueryOpts, key: str) -> Read[kv_pb2.KVPair | None]:
        validate_key(key)

        async def read() -> Read[kv_pb2.KVPair | None]:
            entry, store_index = await self.reader.get(keys.kv_key(key))
            if entry is not None:
                return Read(_load(entry), entry.modify_index, store_index)
            tomb, _ = await self.reader.get(keys.kv_tomb(key))
            return Read(None, (tomb.modify_index if tomb else store_index) or 1, store_index)

        return await blocking_query(self.reader, opts, [keys.kv_key(key), keys.kv_tomb(key)], read)

    async def list_prefix(self, opts: QueryOpts, prefix: str) -> Read[list[kv_pb2.KVPair]]:
        validate_key(prefix, allow_empty=True)

        async def read() -> Read[list[kv_pb2.KVPair]]:
            index, store_index = await self._prefix_index(prefix)
            entries, _ = await self.reader.range(keys.KV + prefix)
            return Read([_load(e) for e in entries], index, store_index)

        return await blocking_query(
            self.reader, opts, [keys.KV + prefix, keys.KV_TOMB + prefix], read
        )

    async def keys(self, opts: QueryOpts, prefix: str, separator: str = "") -> Read[list[str]]:
        validate_key(prefix, allow_empty=True)

        async def read() -> Read[list[str]]:
            index, store_index = await self._prefix_index(prefix)
            entries, _ = await self.reader.range(keys.KV + prefix)
            out: list[str] = []
            for entry in entries:
                name = keys.kv_name(entry.key)
                if separator:
                    cut = name.find(separator, len(prefix))
                    if cut >= 0:
                        name = name[: cut + len(separator)]
                if not out or out[-1] != name:
                    out.append(name)
            return Read(out, index, store_index)

        return await blocking_query(
            self.reader, opts, [keys.KV + prefix, keys.KV_TOMB + prefix], read
        )

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        flags: int = 0,
        cas: int | None = None,
        acquire: str = "",
        release: str = "",
    ) -> tuple[bool, int]:
        """Write ``key``; (applied, index). A lost CAS raises CASConflict."""
        validate_key(key)
        if len(value) > MAX_VALUE_SIZE:
            raise InvalidArgument(f"Value exceeds {MAX_VALUE_SIZE} byte limit ({len(value)} bytes)")
        if acquire and release:
            raise InvalidArgument("Conflicting flags: acquire and release")
        if acquire and self.session_live is not None and not await self.session_live(acquire):
            raise InvalidArgument(f"Invalid session {acquire!r}")
        if acquire:
            delay, _ = await self.store.get(LOCK_DELAY + key)
            if delay is not None and time.time() < float(delay.value or 0):
                return False, delay.modify_index  # in its lock-delay window
        for _ in range(_MAX_TRIES):
            entry, _ = await self.store.get(keys.kv_key(key))
            current = kv_pb2.KVPair.FromString(entry.value) if entry else None
            if cas is not None and (entry.modify_index if entry else 0) != cas:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
            pair = kv_pb2.KVPair(value=value, flags=flags)
            if current is not None:
                pair.lock_index = current.lock_index
                pair.session = current.session
            if acquire:
                if current is not None and current.session and current.session != acquire:
                    return False, entry.modify_index if entry else 0
                if current is None or current.session != acquire:
                    pair.lock_index += 1
                pair.session = acquire
            elif release:
                if current is None or current.session != release:
                    return False, entry.modify_index if entry else 0
                pair.session = ""
            ops: list[Op] = [
                Put(keys.kv_key(key), pair.SerializeToString()),
                Delete(keys.kv_tomb(key)),
            ]
            guard = Compare(keys.kv_key(key), entry.modify_index if entry else 0)
            applied, index = await self.store.txn([guard], ops)
            if applied:
                await reader_caught_up(self.reader, index)
                return True, index
            if cas is not None:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
        raise ConsulError(f"kv put: too much contention on key {key!r}")

    async def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> int:
        """Delete ``key`` (or every key under it with ``recurse``); the index."""
        validate_key(key, allow_empty=recurse)
        if recurse and cas is not None:
            raise InvalidArgument("Conflicting flags: cas and recurse")
        for _ in range(_MAX_TRIES):
            if recurse:
                entries, store_index = await self.store.range(keys.KV + key)
            else:
                entry, store_index = await self.store.get(keys.kv_key(key))
                entries = [entry] if entry else []
                if cas is not None and (entry.modify_index if entry else 0) != cas:
                    raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
            if not entries:
                return store_index or 1
            compares = [Compare(e.key, e.modify_index) for e in entries]
            ops: list[Op] = []
            for e in entries:
                ops += [Delete(e.key), Put(keys.kv_tomb(keys.kv_name(e.key)), tombstone())]
            applied, index = await self.store.txn(compares, ops)
            if applied:
                await reader_caught_up(self.reader, index)
                return index
            if cas is not None:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
        raise ConsulError(f"kv delete: too much contention on key {key!r}")

    async def release_session(self, session: str, lock_delay: float = 0.0) -> None:
        """Release every key ``session`` holds (the session ended).

        With ``lock_delay``, no other session may acquire those keys for that
        long (Consul's lock-delay, which gives the old holder time to notice).
        """
        entries, _ = await self.store.range(keys.KV)
        until = str(time.time() + lock_delay).encode()
        for entry in entries:
            pair = kv_pb2.KVPair.FromString(entry.value)
            if pair.session == session:
                name = keys.kv_name(entry.key)
                await self.put(name, pair.value, flags=pair.flags, release=session)
                if lock_delay > 0:
                    await self.store.txn([], [Put(LOCK_DELAY + name, until)])

    async def reap_tombstones(self, older_than: float, now: float | None = None) -> int:
        """Leader only: forget tombstones (and lock-delays) older than ``older_than`` s.

        Consul's tombstone GC: a prefix's index may then move back, which
        blocking clients handle by starting over (the HTTP API and CLI do).
        """
        now = time.time() if now is None else now
        dead: list[Op] = []
        tombs, _ = await self.store.range(keys.KV_TOMB)
        dead += [Delete(e.key) for e in tombs if now - _stamp(e.value, now) > older_than]
        delays, _ = await self.store.range(LOCK_DELAY)
        dead += [Delete(e.key) for e in delays if now > _stamp(e.value, now)]
        for start in range(0, len(dead), 64):
            await self.store.txn([], dead[start : start + 64])
        return len(dead)
