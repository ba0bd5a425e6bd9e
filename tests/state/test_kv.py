"""KV state on both stores: CAS, tombstones, prefix indexes, blocking reads."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import CASConflict, InvalidArgument
from agent.state.blocking import QueryOpts
from agent.state.kv import KVState
from agent.store import Store


async def test_put_get_list_keys(store: Store) -> None:
    kv = KVState(store)
    await kv.put("a/b", b"1", flags=7)
    await kv.put("a/c/d", b"2")
    await kv.put("ab", b"3")
    got = await kv.get(QueryOpts(), "a/b")
    assert got.value is not None and got.value.value == b"1" and got.value.flags == 7
    listed = await kv.list_prefix(QueryOpts(), "a/")
    assert [p.key for p in listed.value] == ["a/b", "a/c/d"]
    keys = await kv.keys(QueryOpts(), "a/", "/")
    assert keys.value == ["a/b", "a/c/"]
    assert (await kv.get(QueryOpts(), "missing")).value is None


async def test_cas(store: Store) -> None:
    kv = KVState(store)
    _, idx = await kv.put("k", b"1", cas=0)
    with pytest.raises(CASConflict):
        await kv.put("k", b"2", cas=0)
    with pytest.raises(CASConflict):
        await kv.put("k", b"2", cas=idx + 1000)
    await kv.put("k", b"2", cas=idx)
    with pytest.raises(CASConflict):
        await kv.delete("k", cas=idx)
    cur = await kv.get(QueryOpts(), "k")
    assert cur.value is not None
    await kv.delete("k", cas=cur.value.modify_index)
    assert (await kv.get(QueryOpts(), "k")).value is None


async def test_delete_moves_prefix_index_and_wakes_blocking_list(store: Store) -> None:
    kv = KVState(store)
    await kv.put("p/x", b"1")
    await kv.put("p/y", b"1")
    before = await kv.list_prefix(QueryOpts(), "p/")
    waiter = asyncio.create_task(
        kv.list_prefix(QueryOpts(min_index=before.index, max_wait=30), "p/")
    )
    await asyncio.sleep(0.1)
    await kv.delete("p/y")
    after = await asyncio.wait_for(waiter, 5)
    assert after.index > before.index and [p.key for p in after.value] == ["p/x"]
    await kv.delete("p/", recurse=True)
    assert (await kv.list_prefix(QueryOpts(), "p/")).value == []


async def test_blocking_get_not_woken_by_neighbour(store: Store) -> None:
    kv = KVState(store)
    await kv.put("key", b"1")
    first = await kv.get(QueryOpts(), "key")
    waiter = asyncio.create_task(kv.get(QueryOpts(min_index=first.index, max_wait=0.5), "key"))
    await asyncio.sleep(0.1)
    await kv.put("key2", b"x")
    await kv.put("other", b"x")
    res = await asyncio.wait_for(waiter, 5)
    assert res.index == first.index


async def test_validation(store: Store) -> None:
    kv = KVState(store)
    with pytest.raises(InvalidArgument):
        await kv.put("", b"1")
    with pytest.raises(InvalidArgument):
        await kv.put("big", b"x" * (512 * 1024 + 1))
    await kv.put("fits", b"x" * (512 * 1024))


async def test_locks(store: Store) -> None:
    kv = KVState(store)
    ok, _ = await kv.put("lock", b"a", acquire="s1")
    assert ok
    ok, _ = await kv.put("lock", b"b", acquire="s2")
    assert not ok
    ok, _ = await kv.put("lock", b"c", release="s1")
    assert ok
    got = await kv.get(QueryOpts(), "lock")
    assert got.value is not None and got.value.session == "" and got.value.lock_index == 1
