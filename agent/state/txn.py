"""Consul's KV transactions (``/v1/txn``): every operation applies, or none.

The operations are evaluated in order against a snapshot of the keys they
name (later operations see the earlier ones' effects), with the same write
rules as a KV put (``agent.state.kv.next_pair``: CAS, lock, unlock,
lock-delay). The resulting writes are committed in one store transaction,
guarded so that a concurrent change makes the whole transaction evaluate
again:

- a key named by an operation: its modify index;
- a tree (``get-tree``, ``delete-tree``): "no key or tombstone under it, and
  no range tombstone anywhere, written since the snapshot" (three prefix
  compares, however large the tree);
- a ``lock``: the session's record, so a session destroyed meanwhile locks
  nothing.

Size: at most ``MAX_OPS`` (64, Consul's) operations, each at most two store
ops (a write and its tombstone bookkeeping; a ``delete-tree`` is one range
delete and its range tombstone), so a transaction fits one store transaction
of ``MAX_TXN_OPS`` (128) whatever the data. Should the per-key guards not fit
the store's compares, the whole KV is guarded instead (correct, only more
likely to be evaluated again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.errors import ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import reader_caught_up
from agent.state.kv import (
    MAX_VALUE_SIZE,
    KVState,
    KVWrite,
    Refused,
    go_quote,
    next_pair,
    tombstone,
    validate_key,
)
from agent.store import Compare, Delete, Entry, Op, Put, Store
from agent.store.replica import ReplicaStore
from generated.consul.kv.v1 import kv_pb2
from generated.consul.txn.v1 import txn_pb2 as tpb

__all__ = ["MAX_OPS", "TxnState"]

MAX_OPS = 64
_MAX_TRIES = 20
_VERBS = {
    "set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session",
    "check-not-exists", "delete", "delete-tree", "delete-cas",
}  # fmt: skip
_TREE_VERBS = {"get-tree", "delete-tree"}
_WRITE_VERBS = {"set", "cas", "lock", "unlock"}


@dataclass(slots=True)
class _Snapshot:
    """What a transaction read before it evaluates: keys, trees, sessions, lock-delays."""

    index: int  # the store index before any of it was read
    entries: dict[str, Entry | None] = field(default_factory=dict)  # by KV key
    single: set[str] = field(default_factory=set)  # keys named by a single-key op
    trees: set[str] = field(default_factory=set)
    sessions: dict[str, int] = field(default_factory=dict)  # session -> record modify index
    delays: dict[str, float] = field(default_factory=dict)  # key -> lock-delay end


class TxnState:
    def __init__(self, store: Store, kv: KVState) -> None:
        self.store = store
        self.kv = kv

    async def apply(self, ops: Sequence[tpb.KVOp]) -> tpb.TxnResponse:
        if not ops:
            raise InvalidArgument("Transaction contains no operations")
        if len(ops) > MAX_OPS:
            raise InvalidArgument(
                f"Transaction contains too many operations ({len(ops)} > {MAX_OPS})"
            )
        for op in ops:
            if op.verb not in _VERBS:
                raise InvalidArgument(f"Unknown KV verb {op.verb!r}")
            validate_key(op.key, allow_empty=op.verb in _TREE_VERBS)
            if len(op.value) > MAX_VALUE_SIZE:
                raise InvalidArgument(f"Value exceeds {MAX_VALUE_SIZE} byte limit")
        for _ in range(_MAX_TRIES):
            result = await self._try(ops)
            if result is not None:
                return result
        raise ConsulError("txn: too much contention")

    async def _snapshot(self, ops: Sequence[tpb.KVOp]) -> _Snapshot:
        # The keys are read from the KV reader (a server's local replica, after
        # one barrier round trip: it then holds every acknowledged write), not
        # one etcd round trip per key: 64 sets took 65 round trips. The guards
        # compare against the store, so a write that lands after the snapshot
        # still fails the transaction, which is then tried again.
        reader = self.kv.reader
        if isinstance(reader, ReplicaStore):
            await reader.barrier()
        _, first = await reader.get(keys.KV)
        snap = _Snapshot(index=first)
        for op in ops:
            if op.verb in _TREE_VERBS:
                if op.key not in snap.trees:
                    snap.trees.add(op.key)
                    entries, _ = await reader.range(keys.KV + op.key)
                    snap.entries.update((keys.kv_name(e.key), e) for e in entries)
                continue
            snap.single.add(op.key)
            if op.key not in snap.entries:
                snap.entries[op.key], _ = await reader.get(keys.kv_key(op.key))
            if op.verb == "lock":
                if op.session not in snap.sessions:
                    index = await self.kv.session_index(op.session) if self.kv.session_index else 1
                    snap.sessions[op.session] = index
                if op.key not in snap.delays:
                    snap.delays[op.key] = await self.kv.lock_delay_until(op.key)
        return snap

    async def _try(self, ops: Sequence[tpb.KVOp]) -> tpb.TxnResponse | None:
        snap = await self._snapshot(ops)
        view: dict[str, kv_pb2.KVPair | None] = {}
        for name, entry in snap.entries.items():
            if entry is None:
                view[name] = None
            else:
                pair = kv_pb2.KVPair.FromString(entry.value)
                pair.key, pair.create_index, pair.modify_index = (
                    name, entry.create_index, entry.modify_index,
                )  # fmt: skip
                view[name] = pair
        results: list[kv_pb2.KVPair] = []
        errors: list[tpb.TxnError] = []
        written: set[str] = set()
        gets: set[int] = set()  # positions in results of "get" answers, which keep their value
        deleted_trees: list[str] = []
        for i, op in enumerate(ops):
            cur = view.get(op.key)
            index = cur.modify_index if cur is not None else 0
            what = ""
            if op.verb in _WRITE_VERBS:
                what = self._write(op, cur, index, snap, view, results)
                if not what:
                    written.add(op.key)
            elif op.verb == "get":
                if cur is None:
                    what = f"key {go_quote(op.key)} doesn't exist"
                else:  # a copy: a later write of the key must not blank this answer
                    gets.add(len(results))
                    results.append(kv_pb2.KVPair())
                    results[-1].CopyFrom(cur)
            elif op.verb == "get-tree":
                results += [p for k, p in sorted(view.items()) if k.startswith(op.key) and p]
            elif op.verb == "check-index":
                if index != op.index:
                    what = f"current modify index {index} != {op.index}"
            elif op.verb == "check-session":
                if cur is None or cur.session != op.session:
                    what = f"key {go_quote(op.key)} is not locked by session {go_quote(op.session)}"
            elif op.verb == "check-not-exists":
                if cur is not None:
                    what = f"key {go_quote(op.key)} exists"
            elif op.verb == "delete":
                view[op.key] = None
                written.add(op.key)
            elif op.verb == "delete-tree":
                for k in [k for k in view if k.startswith(op.key)]:
                    view[k] = None
                    written.discard(k)
                deleted_trees.append(op.key)
            elif op.verb == "delete-cas":
                if index != op.index:
                    what = f"current modify index {index} != {op.index}"
                else:
                    view[op.key] = None
                    written.add(op.key)
            if what:
                errors.append(tpb.TxnError(op_index=i, what=what))
        if errors:
            return tpb.TxnResponse(errors=errors)
        store_ops = self._store_ops(snap, view, written, deleted_trees)
        if store_ops:
            applied, commit = await self.store.txn(self._guards(snap), store_ops)
            if not applied:
                return None
            await reader_caught_up(self.kv.reader, commit)
        else:
            _, commit = await self.store.get(keys.KV)
        for i, pair in enumerate(results):
            if pair.key in written:
                pair.modify_index = commit
                if not pair.create_index:
                    pair.create_index = commit
                if i not in gets:  # Consul blanks the value of a write's answer, never a get's
                    pair.value = b""
        return tpb.TxnResponse(results=results, index=commit)

    def _write(
        self,
        op: tpb.KVOp,
        cur: kv_pb2.KVPair | None,
        index: int,
        snap: _Snapshot,
        view: dict[str, kv_pb2.KVPair | None],
        results: list[kv_pb2.KVPair],
    ) -> str:
        """Evaluate a set, cas, lock or unlock into ``view``; the error text, or ""."""
        if op.verb == "lock" and not snap.sessions.get(op.session):
            return f"invalid session {go_quote(op.session)}"
        write = KVWrite(
            op.key,
            op.value,
            op.flags,
            cas=op.index if op.verb == "cas" else None,
            acquire=op.session if op.verb == "lock" else "",
            release=op.session if op.verb == "unlock" else "",
        )
        try:
            pair = next_pair(cur, index, write, lock_delay_until=snap.delays.get(op.key, 0.0))
        except Refused as exc:
            return str(exc)
        pair.key = op.key
        if cur is not None:
            pair.create_index = cur.create_index
        view[op.key] = pair
        results.append(pair)
        return ""

    def _store_ops(
        self,
        snap: _Snapshot,
        view: dict[str, kv_pb2.KVPair | None],
        written: set[str],
        deleted_trees: list[str],
    ) -> list[Op]:
        ops: list[Op] = []
        optional: list[Op] = []  # tombstone clean-up, left out should it not fit
        trees = _outermost(deleted_trees)
        puts = {k for k in written if view.get(k) is not None}
        for tree in trees:
            kept = sorted(keys.kv_key(k) for k in puts if k.startswith(tree))
            if not kept:
                ops.append(Delete(keys.KV + tree, prefix=True))
            else:  # a key set again after the delete-tree: delete around it
                doomed = [
                    keys.kv_key(k)
                    for k, e in snap.entries.items()
                    if e is not None and k.startswith(tree) and k not in puts
                ]
                ops += [Delete(p, prefix=True) for p in _cover(doomed, kept)]
            ops.append(Put(keys.kv_range_tomb(tree), tombstone()))
        for k in sorted(written):
            final = view.get(k)
            if final is None:
                in_tree = any(k.startswith(t) for t in trees)
                if snap.entries.get(k) is not None and not in_tree:
                    ops += [Delete(keys.kv_key(k)), Put(keys.kv_tomb(k), tombstone())]
                continue
            stored = kv_pb2.KVPair(
                value=final.value,
                flags=final.flags,
                lock_index=final.lock_index,
                session=final.session,
            )
            ops.append(Put(keys.kv_key(k), stored.SerializeToString()))
            optional.append(Delete(keys.kv_tomb(k)))
        room = self.store.max_txn_ops - len(ops)
        if room < 0:  # only a delete-tree kept open by many keys set again can get here
            raise ConsulError(
                f"txn: {len(ops)} store operations needed, more than one store write takes "
                f"({self.store.max_txn_ops}); split the delete-tree from the sets under it"
            )
        return ops + optional[:room]

    def _guards(self, snap: _Snapshot) -> list[Compare]:
        sessions = [Compare(keys.SESSIONS + s, i) for s, i in sorted(snap.sessions.items())]
        if self.kv.session_index is None:
            sessions = []
        precise = [
            Compare(keys.kv_key(k), e.modify_index if e is not None else 0)
            for k, e in snap.entries.items()
            if k in snap.single and not any(k.startswith(t) for t in snap.trees)
        ]
        for tree in sorted(snap.trees):
            precise += [
                Compare(keys.KV + tree, snap.index, prefix=True),
                Compare(keys.KV_TOMB + tree, snap.index, prefix=True),
            ]
        if snap.trees:
            precise.append(Compare(keys.KV_RANGE_TOMB_ALL, snap.index, prefix=True))
        if len(precise) + len(sessions) <= self.store.max_txn_compares:
            return precise + sessions
        # Too many keys to guard one by one: guard the whole KV.
        return [
            Compare(keys.KV, snap.index, prefix=True),
            Compare(keys.KV_TOMB, snap.index, prefix=True),
            Compare(keys.KV_RANGE_TOMB_ALL, snap.index, prefix=True),
            *sessions,
        ]


def _outermost(prefixes: list[str]) -> list[str]:
    """``prefixes`` without those under another one of them."""
    out: list[str] = []
    for p in sorted(set(prefixes)):
        if not out or not p.startswith(out[-1]):
            out.append(p)
    return out


def _cover(doomed: list[str], kept: list[str]) -> list[str]:
    """Prefixes that together hold every ``doomed`` key and no ``kept`` one.

    For each doomed key, its shortest prefix that no kept key starts with;
    a range delete of each then removes the doomed keys and spares the kept.
    """
    out: set[str] = set()
    for key in doomed:
        n = 1
        while n < len(key) and any(k.startswith(key[:n]) for k in kept):
            n += 1
        out.add(key[:n])
    return _outermost(sorted(out))
