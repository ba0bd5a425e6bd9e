"""The KV store laid out on a store: ``kv/<key>\\x00`` with tombstones.

A delete leaves a tombstone ``kvt/<key>\\x00`` written in the same transaction,
so the index of a prefix (the highest modify index of its keys and tombstones)
moves forward when a key under it is deleted, and a blocking list wakes, as
Consul's KV tombstones do. Check-and-set compares the key's modify index; a
lost CAS is ``CASConflict`` (gRPC ABORTED; HTTP 200 ``false``).

A recursive delete is one range delete, whatever its size, plus one range
tombstone (``keys.kv_range_tomb``), in one transaction: atomic, as Consul's
is. The range tombstone sits under the tombstone prefix of every proper
ancestor of the deleted prefix, so their watchers wake; a read of a prefix
at or under the deleted one also takes the range tombstones of its own
ancestors into its index (``_covering``), so that index never moves back.

Sessions lock keys (``acquire``/``release``): the pair records the session
and its lock index. The rules of a write (CAS, lock, unlock, lock-delay) are
``next_pair``: one implementation, used by ``KVState.put``, by ``/v1/txn``
(``agent.state.txn``) and by session invalidation. An acquire is guarded by
the session's record, so a session destroyed meanwhile acquires nothing.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.errors import CASConflict, ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.store import Compare, Delete, Entry, Op, Put, Store
from generated.consul.kv.v1 import kv_pb2

__all__ = [
    "LOCK_DELAY",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_SIZE",
    "CASMismatch",
    "KVState",
    "KVWrite",
    "LockRefused",
    "Refused",
    "go_quote",
    "next_pair",
]

MAX_VALUE_SIZE = 512 * 1024
MAX_KEY_LENGTH = 4096
_MAX_TRIES = 20
#: Up to this key length, ``_covering`` looks each prefix up by name.
_COVERING_LOOKUPS = 64
#: List and keys answers kept, by (kind, prefix, separator).
_MEMO_SIZE = 64

#: The modify index of a session's record, 0 when it does not exist (set by
#: the session layer; without it, any session name is taken as live).
SessionIndex = Callable[[str], Awaitable[int]]


LOCK_DELAY = "lockdelay/"


class Refused(Exception):
    """A write the KV rules refuse; ``str(exc)`` is Consul's text for it."""


class CASMismatch(Refused):
    """The key is not at the index a check-and-set expected."""


class LockRefused(Refused):
    """An acquire or release the lock rules refuse (held, not held, lock-delay)."""


@dataclass(frozen=True, slots=True)
class KVWrite:
    """One KV write as a client asks for it: a set, a CAS, a lock or an unlock."""

    key: str
    value: bytes
    flags: int = 0
    cas: int | None = None
    acquire: str = ""
    release: str = ""


def next_pair(
    current: kv_pb2.KVPair | None,
    current_index: int,
    write: KVWrite,
    *,
    lock_delay_until: float = 0.0,
    now: float | None = None,
) -> kv_pb2.KVPair:
    """The pair ``write`` leaves at its key, by Consul's rules; Refused if none.

    ``current`` is the pair stored now (None: absent), at ``current_index``
    (0: absent). A set keeps the lock; a CAS must name the current index; an
    acquire fails while another session holds the key or its lock-delay runs
    (``lock_delay_until``, a wall-clock time), and bumps the lock index when
    the session takes the lock anew; a release must come from the holder.
    """
    if write.cas is not None and current_index != write.cas:
        raise CASMismatch(f"failed to set key {go_quote(write.key)}, index is stale")
    pair = kv_pb2.KVPair(value=write.value, flags=write.flags)
    if current is not None:
        pair.lock_index = current.lock_index
        pair.session = current.session
    if write.acquire:
        if current is not None and current.session and current.session != write.acquire:
            raise LockRefused(f"failed to lock key {go_quote(write.key)}, lock is already held")
        if lock_delay_until > (time.time() if now is None else now):
            raise LockRefused(f"failed to lock key {go_quote(write.key)} due to lock delay")
        if current is None or current.session != write.acquire:
            pair.lock_index += 1
        pair.session = write.acquire
    elif write.release:
        if current is None or current.session != write.release:
            raise LockRefused(
                f"failed to unlock key {go_quote(write.key)}, lock isn't held, "
                "or is held by another session"
            )
        pair.session = ""
    return pair


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` writes it (near enough: JSON's escapes), for Consul's texts."""
    return json.dumps(text, ensure_ascii=False)


def tombstone() -> bytes:
    """A tombstone's value: when it was written (for the GC)."""
    return str(time.time()).encode()


def _stamp(value: bytes, default: float) -> float:
    try:
        return float(value.decode() or default)
    except ValueError:
        return default


def stored_pair(entry: Entry | None) -> kv_pb2.KVPair | None:
    """The pair as stored at ``entry`` (no key, no indexes), or None."""
    return kv_pb2.KVPair.FromString(entry.value) if entry is not None else None


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


def delete_tree_ops(prefix: str) -> list[Op]:
    """The two ops of a recursive delete of ``prefix``: the range, and its tombstone."""
    return [Delete(keys.KV + prefix, prefix=True), Put(keys.kv_range_tomb(prefix), tombstone())]


class KVState:
    """KV reads and writes; ``reader`` may be a local replica of ``store``."""

    def __init__(
        self,
        store: Store,
        reader: Store | None = None,
        session_index: SessionIndex | None = None,
    ) -> None:
        self.store = store
        self.reader = reader or store
        self.session_index = session_index
        #: Recent list and keys answers (see ``_memo_get``): 1,000 blocking
        #: readers of one large prefix woken by one write, or repeated reads
        #: between two writes, cost one scan and one decode of its keys, not
        #: one each. The answers are shared: callers copy, never change them.
        self._memo: OrderedDict[tuple[str, str, str], Read[Any]] = OrderedDict()

    # ----- reads --------------------------------------------------------

    async def _covering(self, key: str) -> int:
        """The newest range tombstone of a prefix of ``key`` (``key`` itself included).

        One lookup per prefix length for a short key; for a long one, one read
        of every range tombstone (there are few: the GC forgets them).
        """
        best = 0
        if len(key) > _COVERING_LOOKUPS:
            entries, _ = await self.reader.range(keys.KV_RANGE_TOMB_ALL)
            covering = [e for e in entries if key.startswith(keys.kv_range_prefix(e.key))]
            return max((e.modify_index for e in covering), default=0)
        for n in range(len(key) + 1):
            entry, _ = await self.reader.get(keys.kv_range_tomb(key[:n]))
            if entry is not None:
                best = max(best, entry.modify_index)
        return best

    async def _prefix_index(
        self, prefix: str, read: tuple[Sequence[Entry], int] | None = None
    ) -> tuple[int, int]:
        """The index of ``prefix`` and the store index; ``read``: its entries, if read."""
        live, store_index = read or await self.reader.range(keys.KV + prefix)
        dead, _ = await self.reader.range(keys.KV_TOMB + prefix)
        ranges, _ = await self.reader.range(keys.KV_RANGE_TOMB + prefix)
        best = max((e.modify_index for e in [*live, *dead, *ranges]), default=0)
        best = max(best, await self._covering(prefix))
        return best or store_index or 1, store_index

    async def get(self, opts: QueryOpts, key: str) -> Read[kv_pb2.KVPair | None]:
        validate_key(key)

        async def read() -> Read[kv_pb2.KVPair | None]:
            entry, store_index = await self.reader.get(keys.kv_key(key))
            if entry is not None:
                return Read(_load(entry), entry.modify_index, store_index)
            tomb, _ = await self.reader.get(keys.kv_tomb(key))
            best = max(tomb.modify_index if tomb else 0, await self._covering(key))
            return Read(None, best or store_index or 1, store_index)

        return await blocking_query(self.reader, opts, [keys.kv_key(key), keys.kv_tomb(key)], read)

    def _list_prefixes(self, prefix: str) -> list[str]:
        return [keys.KV + prefix, keys.KV_TOMB + prefix, keys.KV_RANGE_TOMB + prefix]

    async def _memo_get(self, what: tuple[str, str, str]) -> Read[Any] | None:
        """A list or keys answer read at the reader's current index, if kept."""
        found = self._memo.get(what)
        if found is None:
            return None
        _, now = await self.reader.get(keys.KV)
        # Another read may have replaced or dropped the entry meanwhile (on
        # etcd, the get above is a round trip).
        if found.store_index != now:
            if self._memo.get(what) is found:
                del self._memo[what]
            return None
        if what in self._memo:
            self._memo.move_to_end(what)
        return found

    def _memo_put(self, what: tuple[str, str, str], result: Read[Any]) -> None:
        self._memo[what] = result
        while len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)

    async def list_prefix(self, opts: QueryOpts, prefix: str) -> Read[list[kv_pb2.KVPair]]:
        validate_key(prefix, allow_empty=True)

        async def read() -> Read[list[kv_pb2.KVPair]]:
            memo: Read[list[kv_pb2.KVPair]] | None = await self._memo_get(("list", prefix, ""))
            if memo is not None:
                return memo
            entries, at = await self.reader.range(keys.KV + prefix)
            index, store_index = await self._prefix_index(prefix, (entries, at))
            result = Read([_load(e) for e in entries], index, store_index)
            self._memo_put(("list", prefix, ""), result)
            return result

        return await blocking_query(self.reader, opts, self._list_prefixes(prefix), read)

    async def keys(self, opts: QueryOpts, prefix: str, separator: str = "") -> Read[list[str]]:
        validate_key(prefix, allow_empty=True)

        async def read() -> Read[list[str]]:
            memo: Read[list[str]] | None = await self._memo_get(("keys", prefix, separator))
            if memo is not None:
                return memo
            entries, at = await self.reader.range(keys.KV + prefix)
            index, store_index = await self._prefix_index(prefix, (entries, at))
            out: list[str] = []
            for entry in entries:
                name = keys.kv_name(entry.key)
                if separator:
                    cut = name.find(separator, len(prefix))
                    if cut >= 0:
                        name = name[: cut + len(separator)]
                if not out or out[-1] != name:
                    out.append(name)
            result = Read(out, index, store_index)
            self._memo_put(("keys", prefix, separator), result)
            return result

        return await blocking_query(self.reader, opts, self._list_prefixes(prefix), read)

    # ----- writes -------------------------------------------------------

    async def lock_delay_until(self, key: str) -> float:
        """When the lock-delay of ``key`` ends (wall clock; 0: none)."""
        entry, _ = await self.store.get(LOCK_DELAY + key)
        return _stamp(entry.value, 0.0) if entry is not None else 0.0

    async def session_guard(self, session: str) -> Compare | None:
        """A compare that holds while ``session`` lives; InvalidArgument if it does not."""
        if self.session_index is None:
            return None
        index = await self.session_index(session)
        if not index:
            raise InvalidArgument(f"Invalid session {session!r}")
        return Compare(keys.SESSIONS + session, index)

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
        write = KVWrite(key, value, flags, cas, acquire, release)
        for _ in range(_MAX_TRIES):
            compares: list[Compare] = []
            delay = 0.0
            if acquire:
                guard = await self.session_guard(acquire)
                compares += [guard] if guard is not None else []
                delay = await self.lock_delay_until(key)
            entry, store_index = await self.store.get(keys.kv_key(key))
            index = entry.modify_index if entry else 0
            try:
                pair = next_pair(stored_pair(entry), index, write, lock_delay_until=delay)
            except CASMismatch as exc:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}") from exc
            except LockRefused:
                return False, index or store_index or 1
            ops: list[Op] = [
                Put(keys.kv_key(key), pair.SerializeToString()),
                Delete(keys.kv_tomb(key)),
            ]
            compares.append(Compare(keys.kv_key(key), index))
            applied, commit = await self.store.txn(compares, ops)
            if applied:
                await reader_caught_up(self.reader, commit)
                return True, commit
            if cas is not None:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
        raise ConsulError(f"kv put: too much contention on key {key!r}")

    async def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> int:
        """Delete ``key`` (or every key under it with ``recurse``); the index.

        A recursive delete is one range delete and one range tombstone, in
        one transaction, however many keys it removes.
        """
        validate_key(key, allow_empty=recurse)
        if recurse and cas is not None:
            raise InvalidArgument("Conflicting flags: cas and recurse")
        if recurse:
            live, store_index = await self.store.range(keys.KV + key)
            if not live:
                return store_index or 1  # nothing to delete: nothing written, as Consul
            # No compare: the range delete removes whatever is there when it applies.
            _, index = await self.store.txn([], delete_tree_ops(key))
            await reader_caught_up(self.reader, index)
            return index
        for _ in range(_MAX_TRIES):
            entry, store_index = await self.store.get(keys.kv_key(key))
            if cas is not None and (entry.modify_index if entry else 0) != cas:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
            if entry is None:
                return store_index or 1
            applied, index = await self.store.txn(
                [Compare(entry.key, entry.modify_index)],
                [Delete(entry.key), Put(keys.kv_tomb(key), tombstone())],
            )
            if applied:
                await reader_caught_up(self.reader, index)
                return index
            if cas is not None:
                raise CASConflict(f"CAS failed: key {key!r} is not at index {cas}")
        raise ConsulError(f"kv delete: too much contention on key {key!r}")

    def release_ops(self, entry: Entry, session: str, *, delete: bool, until: bytes) -> list[Op]:
        """The ops that end ``session``'s lock on ``entry``: release or delete, and lock-delay."""
        name = keys.kv_name(entry.key)
        ops: list[Op]
        if delete:
            ops = [Delete(entry.key), Put(keys.kv_tomb(name), tombstone())]
        else:
            current = stored_pair(entry)
            assert current is not None
            write = KVWrite(name, current.value, current.flags, release=session)
            pair = next_pair(current, entry.modify_index, write)
            ops = [Put(entry.key, pair.SerializeToString())]
        if until:
            ops.append(Put(LOCK_DELAY + name, until))
        return ops

    async def held_by(self, session: str) -> tuple[list[Entry], int]:
        """The entries ``session`` holds, and the store index they were read at."""
        entries, index = await self.store.range(keys.KV)
        out = []
        for entry in entries:
            pair = stored_pair(entry)
            if pair is not None and pair.session == session:
                out.append(entry)
        return out, index

    async def release_session(
        self, session: str, lock_delay: float = 0.0, *, delete: bool = False
    ) -> int:
        """Release (or, with ``delete``, delete) every key ``session`` holds; the index.

        For a session that no longer exists (``agent.state.sessions`` deletes
        it first, so it takes no new lock): as many keys per transaction as
        the store takes, each guarded by its modify index (a key changed
        meanwhile is read again). With ``lock_delay``, no other session may
        acquire those keys for that long (Consul's lock-delay).
        """
        until = str(time.time() + lock_delay).encode() if lock_delay > 0 else b""
        per_key = (2 if delete else 1) + (1 if until else 0)
        size = max(1, min(self.store.max_txn_ops // per_key, self.store.max_txn_compares))
        index = 0
        tries = 0
        while True:
            held, store_index = await self.held_by(session)
            if not held:
                return index or store_index or 1
            for start in range(0, len(held), size):
                chunk = held[start : start + size]
                ops: list[Op] = []
                for entry in chunk:
                    ops += self.release_ops(entry, session, delete=delete, until=until)
                applied, commit = await self.store.txn(
                    [Compare(e.key, e.modify_index) for e in chunk], ops
                )
                if not applied:
                    tries += 1
                    if tries > _MAX_TRIES:
                        raise ConsulError(f"session release: too much contention on {session!r}")
                    break  # a key changed: read again what the session still holds
                index = commit
                await reader_caught_up(self.reader, commit)

    async def reap_tombstones(self, older_than: float, now: float | None = None) -> int:
        """Leader only: forget tombstones (and lock-delays) older than ``older_than`` s.

        Consul's tombstone GC: a prefix's index may then move back, which
        blocking clients handle by starting over (the HTTP API and CLI do).
        """
        now = time.time() if now is None else now
        dead: list[Op] = []
        for prefix in (keys.KV_TOMB, keys.KV_RANGE_TOMB_ALL):
            tombs, _ = await self.store.range(prefix)
            dead += [Delete(e.key) for e in tombs if now - _stamp(e.value, now) > older_than]
        delays, _ = await self.store.range(LOCK_DELAY)
        dead += [Delete(e.key) for e in delays if now > _stamp(e.value, now)]
        size = self.store.max_txn_ops
        for start in range(0, len(dead), size):
            await self.store.txn([], dead[start : start + size])
        return len(dead)
