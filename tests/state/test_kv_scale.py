"""KV at scale (issue 16, item 4): the costs that grew with the number of keys."""

from __future__ import annotations

import asyncio

from agent.state.blocking import QueryOpts
from agent.state.kv import KVState
from agent.state.txn import TxnState
from agent.store import Store
from agent.store.memory import MemoryStore
from agent.store.replica import ReplicaStore
from generated.consul.txn.v1 import txn_pb2 as tpb


class CountingStore(MemoryStore):
    """The source of a replica (etcd on a server): counts its round trips."""

    reads = 0

    async def get(self, key: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return await super().get(key)

    async def range(self, prefix: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return await super().range(prefix)


async def test_txn_reads_its_keys_from_the_replica() -> None:
    """A 64-set /v1/txn read each key from etcd: 65 round trips, 270 keys/s loading."""
    async with CountingStore() as source:
        replica = ReplicaStore(source)
        await replica.start()
        try:
            kv = KVState(source, replica)
            txn = TxnState(source, kv)
            await kv.put("seed", b"x")
            ops = [tpb.KVOp(verb="set", key=f"k/{i:02d}", value=b"v") for i in range(64)]
            before = source.reads
            result = await txn.apply(ops)
            assert not result.errors and len(result.results) == 64
            assert source.reads - before <= 2  # the barrier, not one read per key
            listed = await kv.list_prefix(QueryOpts(), "k/")
            assert len(listed.value) == 64
            # The guards still hold against the store: a CAS on a stale index fails.
            stale = await txn.apply([tpb.KVOp(verb="cas", key="k/00", index=1, value=b"w")])
            assert [e.op_index for e in stale.errors] == [0]
        finally:
            await replica.aclose()


async def test_list_and_keys_answers_are_shared_until_a_write(store: Store) -> None:
    """1,000 watchers of a 10,000-key prefix woken by one write each scanned and decoded it."""
    kv = KVState(store)
    for i in range(5):
        await kv.put(f"p/g{i % 2}/k{i}", b"v")
    first = await kv.list_prefix(QueryOpts(), "p/")
    again = await kv.list_prefix(QueryOpts(), "p/")
    assert again is first  # nothing written: the same answer, not a new scan
    names = await kv.keys(QueryOpts(), "p/", "/")
    assert names.value == ["p/g0/", "p/g1/"]
    assert await kv.keys(QueryOpts(), "p/", "/") is names
    assert (await kv.keys(QueryOpts(), "p/")).value != names.value  # keyed by separator too
    await kv.put("elsewhere", b"x")
    moved = await kv.list_prefix(QueryOpts(), "p/")
    assert moved is not first and moved.value == first.value and moved.index == first.index
    await kv.put("p/g2/k9", b"v")
    grown = await kv.list_prefix(QueryOpts(), "p/")
    assert [p.key for p in grown.value][-1] == "p/g2/k9" and grown.index > first.index
    assert (await kv.keys(QueryOpts(), "p/", "/")).value == ["p/g0/", "p/g1/", "p/g2/"]
    await kv.delete("p/g0/k0")
    assert "p/g0/k0" not in [p.key for p in (await kv.list_prefix(QueryOpts(), "p/")).value]


async def test_concurrent_reads_of_a_stale_answer(store: Store) -> None:
    """Concurrent readers found the same stale answer; the second to drop it raised
    KeyError (on etcd, where the index check is a round trip)."""
    kv = KVState(store)
    await kv.put("c/1", b"v")
    await kv.list_prefix(QueryOpts(), "c/")
    await kv.put("c/2", b"v")
    reads = await asyncio.gather(*(kv.list_prefix(QueryOpts(), "c/") for _ in range(20)))
    assert all([p.key for p in r.value] == ["c/1", "c/2"] for r in reads)
