"""The store contract (``agent.store.base``), run against every store kind.

Each test gets a started store (``store`` fixture): a fresh memory store, or an
etcd store in a namespace of its own on the session's etcd. Waits are bounded
with ``asyncio.timeout``; nothing sleeps where it can poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from agent.errors import InvalidArgument, NotFound
from agent.store import (
    MAX_TXN_BYTES,
    MAX_TXN_COMPARES,
    MAX_TXN_OPS,
    Compare,
    Delete,
    Entry,
    Event,
    Put,
    Store,
)

# A bound for things that must happen "promptly": generous for a loaded CI box,
# far below the 10 s timeouts the waits are given.
PROMPT = 3.0


async def put(store: Store, key: str, value: bytes = b"v", lease: int = 0) -> int:
    ok, index = await store.txn([], [Put(key, value, lease)])
    assert ok
    return index


async def current_index(store: Store) -> int:
    _, index = await store.get("\x00no-such-key")
    return index


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(PROMPT):
        while len(out) < n:
            out.append(await anext(events))
    return out


async def poll_until_gone(store: Store, key: str, bound: float) -> float:
    """Seconds until ``key`` disappears; fails the test after ``bound``."""
    start = time.monotonic()
    async with asyncio.timeout(bound):
        while (await store.get(key))[0] is not None:
            await asyncio.sleep(0.05)
    return time.monotonic() - start


# -- reads and writes --------------------------------------------------------


async def test_fresh_store_index_is_never_zero(store: Store) -> None:
    entry, index = await store.get("missing")
    assert entry is None
    assert index >= 1
    entries, index = await store.range("")
    assert entries == []
    assert index >= 1


async def test_put_sets_create_and_modify_index_and_version(store: Store) -> None:
    before = await current_index(store)
    i1 = await put(store, "k", b"one")
    assert i1 > before
    entry, index = await store.get("k")
    assert entry == Entry("k", b"one", create_index=i1, modify_index=i1, version=1, lease=0)
    assert index >= i1

    i2 = await put(store, "k", b"two")
    assert i2 > i1
    entry, _ = await store.get("k")
    assert entry == Entry("k", b"two", create_index=i1, modify_index=i2, version=2, lease=0)


async def test_indexes_are_monotonic(store: Store) -> None:
    seen = [await current_index(store)]
    for n in range(5):
        seen.append(await put(store, f"m/{n}"))
        seen.append(await current_index(store))
    assert seen == sorted(seen)
    assert len(set(seen[1::2])) == 5  # every write has its own index


async def test_range_is_by_key_and_only_under_the_prefix(store: Store) -> None:
    for key in ["svc/b", "svc/a", "svc/c/x", "svcx", "other", "svc/é"]:
        await put(store, key, key.encode())
    entries, index = await store.range("svc/")
    assert [e.key for e in entries] == ["svc/a", "svc/b", "svc/c/x", "svc/é"]
    assert [e.value for e in entries] == [
        k.encode() for k in ["svc/a", "svc/b", "svc/c/x", "svc/é"]
    ]
    assert index >= max(e.modify_index for e in entries)
    everything, _ = await store.range("")
    assert [e.key for e in everything] == ["other", "svc/a", "svc/b", "svc/c/x", "svc/é", "svcx"]
    assert (await store.range("nothing/"))[0] == []


async def test_txn_applies_every_op_at_one_index(store: Store) -> None:
    await put(store, "t/old")
    ok, index = await store.txn([], [Put("t/a", b"a"), Put("t/b", b"b"), Delete("t/old")])
    assert ok
    entries, _ = await store.range("t/")
    assert [(e.key, e.modify_index) for e in entries] == [("t/a", index), ("t/b", index)]


async def test_empty_txn_writes_nothing(store: Store) -> None:
    i1 = await put(store, "k")
    ok, index = await store.txn([Compare("k", i1)], [])
    assert (ok, index) == (True, i1)
    assert await current_index(store) == i1


# -- check-and-set -----------------------------------------------------------


async def test_cas_on_modify_index(store: Store) -> None:
    i1 = await put(store, "cas", b"one")
    ok, i2 = await store.txn([Compare("cas", i1)], [Put("cas", b"two")])
    assert ok and i2 > i1

    ok, index = await store.txn([Compare("cas", i1)], [Put("cas", b"three")])
    assert not ok
    assert index == i2  # the current index; nothing was written
    entry, _ = await store.get("cas")
    assert entry is not None and entry.value == b"two" and entry.modify_index == i2


async def test_failed_compare_writes_no_op_at_all(store: Store) -> None:
    i1 = await put(store, "a", b"a")
    await put(store, "b", b"b")
    ok, index = await store.txn(
        [Compare("a", i1), Compare("b", i1)],  # "b" was modified after i1
        [Put("a", b"x"), Put("c", b"x"), Delete("b")],
    )
    assert not ok
    assert index == await current_index(store)
    assert [(e.key, e.value) for e in (await store.range(""))[0]] == [("a", b"a"), ("b", b"b")]


async def test_compare_zero_means_create_only(store: Store) -> None:
    ok, i1 = await store.txn([Compare("once", 0)], [Put("once", b"first")])
    assert ok
    ok, index = await store.txn([Compare("once", 0)], [Put("once", b"second")])
    assert not ok and index == i1
    entry, _ = await store.get("once")
    assert entry is not None and entry.value == b"first"
    # Once deleted, the key is absent again.
    await store.txn([], [Delete("once")])
    ok, _ = await store.txn([Compare("once", 0)], [Put("once", b"third")])
    assert ok


async def test_prefix_compare_guards_a_range_against_puts(store: Store) -> None:
    await put(store, "r/a")
    i2 = await put(store, "r/b")
    await put(store, "rz")  # a neighbour outside the range
    ok, i3 = await store.txn([Compare("r/", i2, prefix=True)], [Put("out", b"1")])
    assert ok
    assert (await store.txn([Compare("r/", i2 - 1, prefix=True)], [Put("out", b"2")]))[0] is False
    assert (await store.txn([Compare("", i3, prefix=True)], [Put("out", b"3")]))[0]
    # A put under the prefix after the index fails it; a delete does not.
    await put(store, "r/c")
    assert (await store.txn([Compare("r/", i3, prefix=True)], [Put("out", b"4")]))[0] is False
    i5 = await current_index(store)
    assert (await store.txn([], [Delete("r/a")]))[0]
    assert (await store.txn([Compare("r/", i5, prefix=True)], [Put("out", b"5")]))[0]
    assert (await store.get("out"))[0] is not None
    assert (await store.get("out"))[0].value == b"5"  # type: ignore[union-attr]
    # No key under the prefix: holds.
    assert (await store.txn([Compare("empty/", 0, prefix=True)], []))[0]


async def test_compare_on_absent_key_with_an_index_fails(store: Store) -> None:
    i1 = await put(store, "x")
    ok, _ = await store.txn([Compare("absent", i1)], [Put("absent", b"v")])
    assert not ok
    assert (await store.get("absent"))[0] is None


# -- deletes -----------------------------------------------------------------


async def test_delete_one_key(store: Store) -> None:
    await put(store, "d/a")
    await put(store, "d/ab")
    ok, index = await store.txn([], [Delete("d/a")])
    assert ok
    assert [e.key for e in (await store.range("d/"))[0]] == ["d/ab"]
    assert await current_index(store) == index


async def test_delete_prefix(store: Store) -> None:
    for key in ["p/a", "p/b/c", "pz", "q"]:
        await put(store, key)
    ok, _ = await store.txn([], [Delete("p/", prefix=True)])
    assert ok
    assert [e.key for e in (await store.range(""))[0]] == ["pz", "q"]


async def test_delete_of_nothing_does_not_advance_the_index(store: Store) -> None:
    i1 = await put(store, "k")
    ok, index = await store.txn([], [Delete("absent"), Delete("none/", prefix=True)])
    assert ok
    assert index == i1 == await current_index(store)


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ops",
    [
        [Put("", b"v")],
        [Put("k", b"1"), Put("k", b"2")],
        [Put("k/a", b"1"), Delete("k/", prefix=True)],
        [Put("k/a/b", b"1"), Delete("k/a", prefix=True), Delete("z", prefix=True)],
        [Put(f"k{n}", b"v") for n in range(MAX_TXN_OPS + 1)],
        [Put(f"k{n}", b"x" * 65536) for n in range(MAX_TXN_BYTES // 65536 + 1)],
        [Put("k", "not bytes")],  # type: ignore[arg-type]
    ],
    ids=[
        "empty-key",
        "put-twice",
        "put-and-delete",
        "put-under-one-of-many-prefix-deletes",
        "too-many-ops",
        "too-many-bytes",
        "str-value",
    ],
)
async def test_bad_txn_is_invalid_argument(store: Store, ops: list[Put | Delete]) -> None:
    before = await current_index(store)
    with pytest.raises(InvalidArgument):
        await store.txn([], ops)
    assert await current_index(store) == before


async def test_too_many_compares_is_invalid_argument(store: Store) -> None:
    compares = [Compare(f"c{n}", 0) for n in range(MAX_TXN_COMPARES + 1)]
    with pytest.raises(InvalidArgument):
        await store.txn(compares, [Put("k", b"v")])
    assert (await store.get("k"))[0] is None


# -- limits: what every store takes --------------------------------------------


async def test_the_contract_limits_are_what_every_store_takes(store: Store) -> None:
    assert store.max_txn_ops == MAX_TXN_OPS and store.max_txn_compares == MAX_TXN_COMPARES
    # As many compares as the contract allows, and as many ops (on etcd, the
    # store's own last-write marker then travels separately): one index.
    compares = [Compare(f"c{n}", 0) for n in range(MAX_TXN_COMPARES)]
    ops = [Put(f"many/{n:05}", b"v") for n in range(MAX_TXN_OPS)]
    ok, index = await store.txn(compares, ops)
    assert ok
    entries, _ = await store.range("many/")
    assert len(entries) == MAX_TXN_OPS and {e.modify_index for e in entries} == {index}
    # A failed compare writes none of them.
    more = [Put(f"many/{n:05}", b"w") for n in range(MAX_TXN_OPS)]
    ok, _ = await store.txn([Compare("many/00000", index + 1000)], more)
    assert not ok
    assert {e.value for e in (await store.range("many/"))[0]} == {b"v"}


async def test_prefix_delete_of_10000_keys_is_one_op_at_one_index(store: Store) -> None:
    for start in range(0, 10_000, MAX_TXN_OPS):
        ops = [Put(f"big/{n:05}", b"v") for n in range(start, min(start + MAX_TXN_OPS, 10_000))]
        assert (await store.txn([], ops))[0]
    await put(store, "bigger")  # a neighbour that must survive
    events = store.watch("big/", await current_index(store) + 1)
    ok, index = await store.txn([], [Delete("big/", prefix=True)])
    assert ok
    assert (await store.range("big/"))[0] == []
    assert [e.key for e in (await store.range("big"))[0]] == ["bigger"]
    seen: list[Event] = []
    async with asyncio.timeout(30):  # 10 000 events; a bound, not a measurement
        while len(seen) < 10_000:
            seen.append(await anext(events))
    assert {(e.kind, e.index) for e in seen} == {("delete", index)}
    assert await current_index(store) == index


async def test_bad_ttl_is_invalid_argument(store: Store) -> None:
    for ttl in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgument):
            await store.grant_lease(ttl)  # type: ignore[arg-type]


async def test_put_with_unknown_lease_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.txn([], [Put("k", b"v", lease=0x1234567)])
    assert (await store.get("k"))[0] is None


# -- wait --------------------------------------------------------------------


async def test_wait_is_not_woken_by_other_prefixes(store: Store) -> None:
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["svc/a/"], after, 0.3))
    await asyncio.sleep(0)  # let the wait register before the writes
    await put(store, "svc/b/1")
    await put(store, "kv/x")
    await put(store, "svc/a")  # a sibling of the prefix, not under it
    await put(store, "svc/ab/1")
    await store.txn([], [Delete("svc/b/1")])
    async with asyncio.timeout(PROMPT):
        assert await waiter is False


async def test_wait_returns_promptly_after_a_matching_put(store: Store) -> None:
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["svc/a/"], after, 10.0))
    await asyncio.sleep(0.05)  # give it a chance to block
    assert not waiter.done()
    start = time.monotonic()
    await put(store, "svc/a/1")
    async with asyncio.timeout(PROMPT):
        assert await waiter is True
    assert time.monotonic() - start < PROMPT


async def test_wait_on_several_prefixes_wakes_on_any(store: Store) -> None:
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["a/", "b/"], after, 10.0))
    await put(store, "b/1")
    async with asyncio.timeout(PROMPT):
        assert await waiter is True


async def test_wait_answers_at_once_for_a_change_already_made(store: Store) -> None:
    before = await current_index(store)
    await put(store, "svc/a/1")
    await put(store, "other")  # later writes elsewhere do not hide it
    start = time.monotonic()
    assert await store.wait(["svc/a/"], before, 10.0) is True
    assert time.monotonic() - start < 1.5


async def test_wait_ignores_changes_at_or_before_after_index(store: Store) -> None:
    i1 = await put(store, "svc/a/1")
    assert await store.wait(["svc/a/"], i1, 0.2) is False


async def test_wait_times_out_with_false(store: Store) -> None:
    after = await current_index(store)
    start = time.monotonic()
    assert await store.wait(["quiet/"], after, 0.2) is False
    assert 0.15 <= time.monotonic() - start < PROMPT


async def test_delete_wakes_waiters(store: Store) -> None:
    await put(store, "svc/a/1")
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["svc/a/"], after, 10.0))
    await store.txn([], [Delete("svc/a/1")])
    async with asyncio.timeout(PROMPT):
        assert await waiter is True


async def test_cancelled_wait_leaves_the_store_usable(store: Store) -> None:
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["c/"], after, 10.0))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await put(store, "c/1")
    assert await store.wait(["c/"], after, 1.0) is True


# -- leases ------------------------------------------------------------------


async def test_grant_lease_gives_a_non_zero_id(store: Store) -> None:
    a, b = await store.grant_lease(5), await store.grant_lease(5)
    assert a != 0 and b != 0 and a != b
    await store.revoke_lease(a)
    await store.revoke_lease(b)


async def test_keys_vanish_when_their_lease_expires(store: Store) -> None:
    lease = await store.grant_lease(1)
    await put(store, "l/a", lease=lease)
    await put(store, "l/b", lease=lease)
    await put(store, "l/keep")
    entry, _ = await store.get("l/a")
    assert entry is not None and entry.lease == lease
    after = await current_index(store)
    waiter = asyncio.create_task(store.wait(["l/"], after, 10.0))
    await poll_until_gone(store, "l/a", bound=6.0)
    assert (await store.get("l/b"))[0] is None
    assert (await store.get("l/keep"))[0] is not None
    async with asyncio.timeout(PROMPT):
        assert await waiter is True  # expiry is a delete, and wakes waiters
    assert await store.keepalive(lease) is False


async def test_keepalive_keeps_the_keys(store: Store) -> None:
    lease = await store.grant_lease(1)
    await put(store, "l/a", lease=lease)
    deadline = time.monotonic() + 2.5  # well past the 1 s TTL (etcd expires within 1.5 s)
    while time.monotonic() < deadline:
        assert await store.keepalive(lease) is True
        assert (await store.get("l/a"))[0] is not None
        await asyncio.sleep(0.25)
    await store.revoke_lease(lease)


async def test_revoke_deletes_at_once_at_one_index(store: Store) -> None:
    lease = await store.grant_lease(30)
    start = await put(store, "r/a", lease=lease)
    await put(store, "r/b", lease=lease)
    events = store.watch("r/", start + 2)
    try:
        await store.revoke_lease(lease)
        assert (await store.range("r/"))[0] == []
        deleted = await take(events, 2)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [(e.kind, e.key) for e in deleted] == [("delete", "r/a"), ("delete", "r/b")]
    assert deleted[0].index == deleted[1].index
    await store.revoke_lease(lease)  # already gone: no error
    assert await store.keepalive(lease) is False


async def test_keepalive_of_unknown_lease_is_false(store: Store) -> None:
    assert await store.keepalive(0x7EADBEEF) is False
    await store.revoke_lease(0x7EADBEEF)  # no error either


async def test_put_moves_a_key_off_its_lease(store: Store) -> None:
    lease = await store.grant_lease(30)
    await put(store, "m/a", lease=lease)
    await put(store, "m/a", b"now free")  # no lease any more
    await store.revoke_lease(lease)
    entry, _ = await store.get("m/a")
    assert entry is not None and entry.value == b"now free" and entry.lease == 0


# -- watch -------------------------------------------------------------------


async def test_watch_replays_history_then_streams_live(store: Store) -> None:
    i1 = await put(store, "w/a", b"1")
    i2 = await put(store, "w/b", b"2")
    await put(store, "elsewhere")
    ok, i3 = await store.txn([], [Delete("w/a")])
    assert ok
    events = store.watch("w/", i1)
    try:
        replayed = await take(events, 3)
        assert [(e.kind, e.key, e.index) for e in replayed] == [
            ("put", "w/a", i1),
            ("put", "w/b", i2),
            ("delete", "w/a", i3),
        ]
        assert replayed[0].entry == Entry("w/a", b"1", i1, i1, 1, 0)
        assert replayed[2].entry is None

        i4 = await put(store, "w/b", b"3")
        await put(store, "elsewhere")
        ok, i5 = await store.txn([], [Delete("w/", prefix=True)])
        live = await take(events, 2)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [(e.kind, e.key, e.index) for e in live] == [("put", "w/b", i4), ("delete", "w/b", i5)]
    assert live[0].entry == Entry("w/b", b"3", i2, i4, 2, 0)


async def test_watch_from_a_later_index_skips_earlier_events(store: Store) -> None:
    await put(store, "w/a")
    i2 = await put(store, "w/b")
    events = store.watch("w/", i2)
    try:
        (first,) = await take(events, 1)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert (first.key, first.index) == ("w/b", i2)


async def test_watch_can_be_cancelled(store: Store) -> None:
    start = await current_index(store) + 1
    received = asyncio.Event()

    async def consume() -> None:
        async for _ in store.watch("cw/", start):
            received.set()

    task = asyncio.create_task(consume())
    await put(store, "cw/1")
    async with asyncio.timeout(PROMPT):
        await received.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The store carries on, and a new watch works.
    await put(store, "cw/2")
    events = store.watch("cw/", start)
    try:
        assert [e.key for e in await take(events, 2)] == ["cw/1", "cw/2"]
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_watch_rejects_a_negative_index(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        store.watch("x/", -1)
