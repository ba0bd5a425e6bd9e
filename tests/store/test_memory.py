"""What only the memory store has: a bounded history, waiter and watcher bookkeeping."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import InvalidArgument
from agent.store import CompactedError, Delete, Put
from agent.store.memory import MemoryStore


async def put(store: MemoryStore, key: str, value: bytes = b"v", lease: int = 0) -> int:
    ok, index = await store.txn([], [Put(key, value, lease)])
    assert ok
    return index


async def test_watch_before_the_history_floor_is_compacted() -> None:
    store = MemoryStore(history_size=3)
    first = await put(store, "a/1")
    for n in range(2, 6):
        await put(store, f"a/{n}")
    with pytest.raises(CompactedError) as info:
        await anext(store.watch("a/", first))
    assert info.value.compact_index >= first
    # The newest events are still there.
    events = store.watch("a/", info.value.compact_index + 1)
    event = await anext(events)
    assert event.index == info.value.compact_index + 1
    await events.aclose()  # type: ignore[attr-defined]


async def test_wait_before_the_history_floor_answers_true_at_once() -> None:
    store = MemoryStore(history_size=3)
    first = await put(store, "a/1")
    for n in range(5):
        await put(store, f"b/{n}")
    # Nothing under "a/" changed after `first`, but the history cannot tell.
    assert await store.wait(["a/"], first, 5.0) is True
    # From the floor on, it can.
    _, now = await store.get("x")
    assert await store.wait(["a/"], now - 1, 0.05) is False


async def test_a_write_elsewhere_does_not_touch_the_waiter() -> None:
    store = MemoryStore()
    _, after = await store.get("x")
    waiter = asyncio.create_task(store.wait(["a/"], after, 5.0))
    await asyncio.sleep(0)
    (fut,) = store._waiters["a/"]
    await put(store, "b/1")
    await put(store, "a")
    assert not fut.done()
    await put(store, "a/1")
    assert fut.done()
    assert await waiter is True


async def test_waiters_are_removed_after_wake_timeout_and_cancel() -> None:
    store = MemoryStore()
    _, after = await store.get("x")
    assert await store.wait(["t/"], after, 0.01) is False
    waiter = asyncio.create_task(store.wait(["w/", "w/"], after, 5.0))
    cancelled = asyncio.create_task(store.wait(["c/"], after, 5.0))
    await asyncio.sleep(0)
    assert set(store._waiters) == {"w/", "c/"}
    await put(store, "w/1")
    assert await waiter is True
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert store._waiters == {}


async def test_wait_after_a_future_index_waits_for_that_index() -> None:
    store = MemoryStore()
    _, now = await store.get("x")
    waiter = asyncio.create_task(store.wait(["f/"], now + 1, 5.0))
    await put(store, "f/1")  # at now + 1: not after it
    await asyncio.sleep(0)
    assert not waiter.done()
    await put(store, "f/2")
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_wait_with_no_prefixes_just_times_out() -> None:
    store = MemoryStore()
    _, now = await store.get("x")
    assert await store.wait([], now, 0.05) is False


async def test_watch_from_now_starts_when_called() -> None:
    store = MemoryStore()
    await put(store, "n/old")
    events = store.watch("n/", 0)
    index = await put(store, "n/new")
    event = await asyncio.wait_for(anext(events), 1.0)
    assert (event.key, event.index) == ("n/new", index)
    await events.aclose()  # type: ignore[attr-defined]
    assert store._subscribers == {}


async def test_cancelled_watch_unsubscribes() -> None:
    store = MemoryStore()

    async def consume() -> None:
        async for _ in store.watch("c/", 0):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    assert "c/" in store._subscribers
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store._subscribers == {}


async def test_a_watcher_that_falls_behind_gets_compacted() -> None:
    store = MemoryStore(watch_queue_size=2)
    _, now = await store.get("x")
    events = store.watch("s/", now + 1)
    first = await put(store, "s/0")
    assert (await anext(events)).index == first  # subscribed now
    indexes = [await put(store, f"s/{n}") for n in range(1, 5)]
    got = [(await anext(events)).index for _ in range(2)]
    assert got == indexes[:2]
    with pytest.raises(CompactedError) as info:
        await anext(events)
    assert info.value.compact_index == indexes[2] - 1
    assert store._subscribers == {}


async def test_expiry_needs_start_and_stops_at_aclose() -> None:
    store = MemoryStore()
    lease = await store.grant_lease(1)
    await put(store, "l/a", lease=lease)
    await store.start()
    await store.start()  # idempotent
    assert store._loops.running
    async with asyncio.timeout(5.0):
        while (await store.get("l/a"))[0] is not None:
            await asyncio.sleep(0.05)
    await store.aclose()
    assert not store._loops.running
    await store.aclose()  # idempotent


async def test_keepalive_after_the_deadline_ends_the_lease() -> None:
    # No expiry task: keepalive itself notices the lease is past its deadline.
    store = MemoryStore()
    lease = await store.grant_lease(1)
    await put(store, "l/a", lease=lease)
    store._leases[lease].deadline = asyncio.get_running_loop().time() - 1
    assert await store.keepalive(lease) is False
    assert (await store.get("l/a"))[0] is None


async def test_history_records_one_index_per_commit() -> None:
    store = MemoryStore()
    ok, index = await store.txn([], [Put("a", b"1"), Put("b", b"2"), Delete("zzz")])
    assert ok
    assert [(e.kind, e.key, e.index) for e in store._history] == [
        ("put", "a", index),
        ("put", "b", index),
    ]


def test_bad_history_size() -> None:
    with pytest.raises(InvalidArgument):
        MemoryStore(history_size=0)


async def test_context_manager() -> None:
    async with MemoryStore() as store:
        assert store.kind == "memory"
        assert store._loops.running
    assert not store._loops.running
