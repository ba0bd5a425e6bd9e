"""Consul's KV transactions (``/v1/txn``): every operation applies, or none.

The operations are evaluated in order against a snapshot of the keys they
name (later operations see the earlier ones' effects); the resulting writes
are committed in one store transaction guarded by the modify index of every
key read, so a concurrent change makes the whole transaction re-evaluate.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.errors import ConsulError, InvalidArgument
from agent.state import keys
from agent.state.kv import MAX_VALUE_SIZE, KVState, tombstone, validate_key
from agent.store import Compare, Delete, Entry, Op, Put, Store
from generated.consul.kv.v1 import kv_pb2
from generated.consul.txn.v1 import txn_pb2 as tpb

__all__ = ["MAX_OPS", "TxnState"]

MAX_OPS = 64
_VERBS = {
    "set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session",
    "check-not-exists", "delete", "delete-tree", "delete-cas",
}  # fmt: skip
_TREE_VERBS = {"get-tree", "delete-tree"}


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
        for _ in range(20):
            result = await self._try(ops)
            if result is not None:
                return result
        raise ConsulError("txn: too much contention")

    async def _try(self, ops: Sequence[tpb.KVOp]) -> tpb.TxnResponse | None:
        # Snapshot every key the ops name.
        seen: dict[str, Entry | None] = {}
        for op in ops:
            if op.verb in _TREE_VERBS:
                entries, _ = await self.store.range(keys.KV + op.key)
                for e in entries:
                    seen[keys.kv_name(e.key)] = e
            elif op.key not in seen:
                seen[op.key], _ = await self.store.get(keys.kv_key(op.key))
        view: dict[str, kv_pb2.KVPair | None] = {}
        for name, entry in seen.items():
            if entry is None:
                view[name] = None
            else:
                pair = kv_pb2.KVPair.FromString(entry.value)
                pair.key, pair.create_index, pair.modify_index = (
                    name, entry.create_index, entry.modify_index,
                )  # fmt: skip
                view[name] = pair
        if self.kv.session_live is not None:
            for op in ops:
                if op.verb == "lock" and not await self.kv.session_live(op.session):
                    return tpb.TxnResponse(
                        errors=[
                            tpb.TxnError(
                                op_index=ops.index(op), what=f"invalid session {op.session!r}"
                            )
                        ]
                    )
        results: list[kv_pb2.KVPair] = []
        errors: list[tpb.TxnError] = []
        written: set[str] = set()
        for i, op in enumerate(ops):
            cur = view.get(op.key)
            index = cur.modify_index if cur is not None else 0

            def fail(what: str, i: int = i) -> None:
                errors.append(tpb.TxnError(op_index=i, what=what))

            def put(session: str | None = None, lock_inc: int = 0, op: tpb.KVOp = op) -> None:
                old = view.get(op.key)
                pair = kv_pb2.KVPair(key=op.key, value=op.value, flags=op.flags)
                if old is not None:
                    pair.lock_index, pair.session = old.lock_index, old.session
                    pair.create_index = old.create_index
                if session is not None:
                    pair.session = session
                pair.lock_index += lock_inc
                view[op.key] = pair
                written.add(op.key)
                results.append(pair)  # noqa: B023 - one list for every op

            if op.verb == "set":
                put()
            elif op.verb == "cas":
                if index != op.index:
                    fail(f"current modify index {index} != {op.index}")
                else:
                    put()
            elif op.verb == "lock":
                if cur is not None and cur.session and cur.session != op.session:
                    fail(f"key {op.key!r} is locked by another session")
                else:
                    put(op.session, 0 if cur is not None and cur.session == op.session else 1)
            elif op.verb == "unlock":
                if cur is None or cur.session != op.session:
                    fail(f"key {op.key!r} is not locked by session {op.session!r}")
                else:
                    put("")
            elif op.verb == "get":
                if cur is None:
                    fail(f"key {op.key!r} doesn't exist")
                else:
                    results.append(cur)
            elif op.verb == "get-tree":
                results += [p for k, p in sorted(view.items()) if k.startswith(op.key) and p]
            elif op.verb == "check-index":
                if index != op.index:
                    fail(f"current modify index {index} != {op.index}")
            elif op.verb == "check-session":
                if cur is None or cur.session != op.session:
                    fail(f"key {op.key!r} is not locked by session {op.session!r}")
            elif op.verb == "check-not-exists":
                if cur is not None:
                    fail(f"key {op.key!r} exists")
            elif op.verb == "delete":
                view[op.key] = None
                written.add(op.key)
            elif op.verb == "delete-tree":
                for k in [k for k in view if k.startswith(op.key)]:
                    view[k] = None
                    written.add(k)
            elif op.verb == "delete-cas":
                if index != op.index:
                    fail(f"current modify index {index} != {op.index}")
                else:
                    view[op.key] = None
                    written.add(op.key)
        if errors:
            return tpb.TxnResponse(errors=errors)
        compares = [Compare(keys.kv_key(k), e.modify_index if e else 0) for k, e in seen.items()]
        store_ops: list[Op] = []
        for k in sorted(written):
            final = view[k]
            if final is None:
                if seen.get(k) is not None:
                    store_ops += [Delete(keys.kv_key(k)), Put(keys.kv_tomb(k), tombstone())]
            else:
                stored = kv_pb2.KVPair(
                    value=final.value,
                    flags=final.flags,
                    lock_index=final.lock_index,
                    session=final.session,
                )
                store_ops += [
                    Put(keys.kv_key(k), stored.SerializeToString()),
                    Delete(keys.kv_tomb(k)),
                ]
        if store_ops:
            applied, commit = await self.store.txn(compares, store_ops)
            if not applied:
                return None
        else:
            _, commit = await self.store.get(keys.KV)
        for pair in results:
            if pair.key in written:
                pair.modify_index = commit
                if not pair.create_index:
                    pair.create_index = commit
                pair.value = b""
        return tpb.TxnResponse(results=results, index=commit)
