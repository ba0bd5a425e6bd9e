"""Manager rules, pinned one by one with a FauxPinger and a seeded random.Random."""

from __future__ import annotations

import asyncio
import random

import pytest

from agent.router import Manager, Server
from agent.router.manager import (
    MIN_REBALANCE_INTERVAL,
    REBALANCE_CONNS_PER_SEC_PER_SERVER,
    REBALANCE_JITTER,
)


def srv(name: str, dc: str = "dc1", port: int = 8300) -> Server:
    return Server(
        name=name,
        address=f"10.0.0.{int(name[1:]) if name[1:].isdigit() else 9}:{port}",
        datacenter=dc,
    )


class FauxPinger:
    """Answers True except for names in ``failing``; records every ping."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing: set[str] = failing or set()
        self.pinged: list[str] = []

    async def ping(self, server: Server) -> bool:
        self.pinged.append(server.name)
        return server.name not in self.failing


class GatedPinger(FauxPinger):
    """Blocks every ping until ``gate`` is set, so a test can act mid-rebalance."""

    def __init__(self, failing: set[str] | None = None) -> None:
        super().__init__(failing)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def ping(self, server: Server) -> bool:
        self.waiting.set()
        await self.gate.wait()
        return await super().ping(server)


def make(
    pinger: FauxPinger | None = None, names: tuple[str, ...] = (), seed: int = 1, **kw: object
) -> Manager:
    m = Manager("dc1", pinger or FauxPinger(), rng=random.Random(seed), **kw)  # type: ignore[arg-type]
    for n in names:
        m.add_server(srv(n))
    return m


def names(m: Manager) -> list[str]:
    return [s.name for s in m.servers]


# -- startup, find, add, remove ---------------------------------------------


def test_starts_empty_and_offline() -> None:
    m = make()
    assert m.servers == ()
    assert m.offline is True
    assert m.find_server() is None


def test_find_server_returns_first_and_ignores_offline() -> None:
    m = make(names=("s1", "s2"))
    m._offline = True  # as after a failed rebalance
    assert m.find_server() == srv("s1")


def test_add_server_appends_and_goes_online() -> None:
    m = make()
    m.add_server(srv("s1"))
    assert m.offline is False
    m.add_server(srv("s2"))
    m.add_server(srv("s3"))
    assert names(m) == ["s1", "s2", "s3"]


def test_add_server_same_name_replaces_in_place() -> None:
    m = make(names=("s1", "s2", "s3"))
    moved = Server("s2", "10.9.9.9:8300", "dc1")
    m.add_server(moved)
    assert names(m) == ["s1", "s2", "s3"]
    assert m.servers[1].address == "10.9.9.9:8300"


def test_add_server_sets_online_again_after_offline() -> None:
    m = make(names=("s1",))
    m._offline = True
    m.add_server(srv("s1"))
    assert m.offline is False


def test_remove_server_by_name_keeps_order() -> None:
    m = make(names=("s1", "s2", "s3", "s4"))
    m.remove_server(Server("s2", "1.2.3.4:1", "dc1"))  # another address, same name
    assert names(m) == ["s1", "s3", "s4"]
    m.remove_server(srv("nope"))
    assert names(m) == ["s1", "s3", "s4"]


def test_list_is_replaced_whole_not_mutated() -> None:
    m = make(names=("s1", "s2"))
    before = m.servers
    m.add_server(srv("s3"))
    assert before == (srv("s1"), srv("s2"))
    assert isinstance(m.servers, tuple)


# -- notify_failed_server ---------------------------------------------------


def test_notify_failed_rotates_first_to_end() -> None:
    m = make(names=("s1", "s2", "s3"))
    m.notify_failed_server(srv("s1"))
    assert names(m) == ["s2", "s3", "s1"]


def test_notify_failed_ignores_a_server_that_is_not_first() -> None:
    m = make(names=("s1", "s2", "s3"))
    m.notify_failed_server(srv("s2"))
    assert names(m) == ["s1", "s2", "s3"]


def test_notify_failed_matches_by_name() -> None:
    m = make(names=("s1", "s2"))
    m.notify_failed_server(Server("s1", "192.168.1.1:9999", "dc1"))
    assert names(m) == ["s2", "s1"]


def test_notify_failed_with_one_server_does_nothing() -> None:
    m = make(names=("s1",))
    m.notify_failed_server(srv("s1"))
    assert names(m) == ["s1"]


def test_notify_failed_with_no_server_does_nothing() -> None:
    m = make()
    m.notify_failed_server(srv("s1"))
    assert m.servers == ()


def test_burst_of_failures_on_same_server_rotates_once() -> None:
    # The second report names s1, which is no longer first: no second rotation.
    m = make(names=("s1", "s2", "s3"))
    for _ in range(5):
        m.notify_failed_server(srv("s1"))
    assert names(m) == ["s2", "s3", "s1"]


async def test_concurrent_notify_does_not_queue_behind_a_rotation() -> None:
    """Regression: a caller that finds another rotating returns at once, it does not
    wait for the lock and rotate again."""
    m = make(names=("s1", "s2", "s3"))
    holder_has_lock = asyncio.Event()
    release = asyncio.Event()

    async def rotating_elsewhere() -> None:
        assert m._notify_failed_barrier.acquire(blocking=False)
        holder_has_lock.set()
        try:
            await release.wait()
        finally:
            m._notify_failed_barrier.release()

    holder = asyncio.create_task(rotating_elsewhere())
    await holder_has_lock.wait()
    # From another thread, so a caller that queued on the lock would hang here.
    await asyncio.wait_for(asyncio.to_thread(m.notify_failed_server, srv("s1")), 1)
    assert names(m) == ["s1", "s2", "s3"]
    release.set()
    await holder
    m.notify_failed_server(srv("s1"))
    assert names(m) == ["s2", "s3", "s1"]


def test_notify_failed_checks_again_under_the_lock() -> None:
    # The list changed between the lock-free check and the lock: no rotation.
    m = make(names=("s1", "s2", "s3"))

    class Racing:
        def __init__(self) -> None:
            self.inner = m._list_lock

        def __enter__(self) -> None:
            self.inner.acquire()
            m._servers = (srv("s2"), srv("s3"), srv("s1"))

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    m._list_lock = Racing()  # type: ignore[assignment]
    m.notify_failed_server(srv("s1"))
    assert names(m) == ["s2", "s3", "s1"]


# -- rebalance_servers --------------------------------------------------------


async def test_rebalance_shuffles_with_the_injected_random() -> None:
    m1 = make(names=("s1", "s2", "s3", "s4", "s5"), seed=7)
    m2 = make(names=("s1", "s2", "s3", "s4", "s5"), seed=7)
    assert await m1.rebalance_servers()
    assert await m2.rebalance_servers()
    expected = ["s1", "s2", "s3", "s4", "s5"]
    random.Random(7).shuffle(expected)
    assert names(m1) == names(m2) == expected


async def test_rebalance_keeps_all_servers_across_seeds() -> None:
    for seed in range(20):
        m = make(names=("s1", "s2", "s3", "s4"), seed=seed)
        await m.rebalance_servers()
        assert sorted(names(m)) == ["s1", "s2", "s3", "s4"]


async def test_rebalance_pings_only_the_first_when_healthy() -> None:
    pinger = FauxPinger()
    m = make(pinger, names=("s1", "s2", "s3"))
    await m.rebalance_servers()
    assert pinger.pinged == [names(m)[0]]
    assert m.offline is False


async def test_rebalance_rotates_past_failing_servers() -> None:
    pinger = FauxPinger(failing={"s1", "s2", "s3"})
    m = make(pinger, names=("s1", "s2", "s3", "s4"), seed=3)
    assert await m.rebalance_servers()
    assert names(m)[0] == "s4"
    assert pinger.pinged[-1] == "s4"
    assert set(pinger.pinged[:-1]) <= {"s1", "s2", "s3"}
    # The failed ones follow in rotated order, none lost.
    assert sorted(names(m)) == ["s1", "s2", "s3", "s4"]


async def test_rebalance_with_no_healthy_server_goes_offline_and_keeps_list() -> None:
    pinger = FauxPinger(failing={"s1", "s2", "s3"})
    m = make(pinger, names=("s1", "s2", "s3"))
    assert m.offline is False
    assert await m.rebalance_servers() is False
    assert m.offline is True
    assert names(m) == ["s1", "s2", "s3"]
    assert sorted(pinger.pinged) == ["s1", "s2", "s3"]  # each pinged once, up to len


async def test_rebalance_on_empty_list_is_offline() -> None:
    m = make()
    assert await m.rebalance_servers() is False
    assert m.offline is True


async def test_rebalance_recovers_from_offline() -> None:
    pinger = FauxPinger(failing={"s1", "s2"})
    m = make(pinger, names=("s1", "s2"))
    await m.rebalance_servers()
    assert m.offline
    pinger.failing.clear()
    assert await m.rebalance_servers()
    assert m.offline is False


async def test_ping_that_raises_counts_as_unhealthy() -> None:
    class Raising(FauxPinger):
        async def ping(self, server: Server) -> bool:
            self.pinged.append(server.name)
            if server.name == "s1":
                raise OSError("boom")
            return True

    m = make(Raising(), names=("s1", "s2"), seed=0)
    assert await m.rebalance_servers()
    assert names(m)[0] == "s2"


async def test_self_name_is_healthy_without_a_ping() -> None:
    pinger = FauxPinger(failing={"s1", "s2", "s3"})
    m = make(pinger, names=("s1", "s2", "s3"), self_name="s2")
    assert await m.rebalance_servers()
    assert names(m)[0] == "s2"
    assert "s2" not in pinger.pinged


async def test_server_added_during_pings_is_kept() -> None:
    pinger = GatedPinger()
    m = make(pinger, names=("s1", "s2", "s3"))
    task = asyncio.create_task(m.rebalance_servers())
    await pinger.waiting.wait()
    m.add_server(srv("s4"))
    m.add_server(srv("s5"))
    pinger.gate.set()
    assert await task
    assert sorted(names(m)) == ["s1", "s2", "s3", "s4", "s5"]
    assert names(m)[-2:] == ["s4", "s5"]  # appended, in the order added


async def test_server_removed_during_pings_is_dropped() -> None:
    pinger = GatedPinger()
    m = make(pinger, names=("s1", "s2", "s3", "s4"), seed=5)
    shuffled = ["s1", "s2", "s3", "s4"]
    random.Random(5).shuffle(shuffled)
    gone = shuffled[2]  # not the one being pinged first
    task = asyncio.create_task(m.rebalance_servers())
    await pinger.waiting.wait()
    m.remove_server(srv(gone))
    pinger.gate.set()
    assert await task
    assert names(m) == [n for n in shuffled if n != gone]


async def test_chosen_first_removed_during_pings_keeps_current_list() -> None:
    m: Manager

    class RemovingPinger(FauxPinger):
        """The server being pinged leaves while its ping is in flight."""

        async def ping(self, server: Server) -> bool:
            m.remove_server(server)
            m.add_server(srv("s9"))
            await asyncio.sleep(0)
            return await super().ping(server)

    pinger = RemovingPinger()
    m = make(pinger, names=("s1", "s2", "s3"), seed=2)
    before = names(m)
    assert await m.rebalance_servers() is False
    first = pinger.pinged[0]
    assert names(m) == [n for n in before if n != first] + ["s9"]
    assert m.offline is False


async def test_server_replaced_during_pings_keeps_new_address() -> None:
    pinger = GatedPinger()
    m = make(pinger, names=("s1", "s2", "s3"))
    task = asyncio.create_task(m.rebalance_servers())
    await pinger.waiting.wait()
    m.add_server(Server("s2", "10.9.9.9:8300", "dc1"))
    pinger.gate.set()
    assert await task
    assert {s.name: s.address for s in m.servers}["s2"] == "10.9.9.9:8300"
    assert len(m.servers) == 3


async def test_rotation_during_rebalance_is_superseded_by_rebalance() -> None:
    # Consul's behaviour: the rebalance publishes its own order.
    pinger = GatedPinger()
    m = make(pinger, names=("s1", "s2", "s3"), seed=4)
    task = asyncio.create_task(m.rebalance_servers())
    await pinger.waiting.wait()
    m.notify_failed_server(srv("s1"))
    pinger.gate.set()
    assert await task
    expected = ["s1", "s2", "s3"]
    random.Random(4).shuffle(expected)
    assert names(m) == expected


# -- rebalance timer ----------------------------------------------------------


def test_interval_floor_is_120s_plus_up_to_60s_jitter() -> None:
    m = make(names=("s1", "s2", "s3"), member_count=lambda: 10)
    for _ in range(200):
        interval = m.rebalance_interval()
        assert MIN_REBALANCE_INTERVAL <= interval < MIN_REBALANCE_INTERVAL + REBALANCE_JITTER


def test_interval_is_jittered_by_the_injected_random() -> None:
    m = make(names=("s1",), seed=11)
    expected = MIN_REBALANCE_INTERVAL + random.Random(11).uniform(0, REBALANCE_JITTER)
    assert m.rebalance_interval() == pytest.approx(expected)


def test_interval_scales_with_cluster_size() -> None:
    # 100,000 members and 3 servers: 100000 / (3 * 64) = 520.8 s.
    m = make(names=("s1", "s2", "s3"), member_count=lambda: 100_000)
    assert m.rebalance_interval() == pytest.approx(
        100_000 / (3 * REBALANCE_CONNS_PER_SEC_PER_SERVER)
    )
    # 10,000 members and 3 servers: 52 s, under the floor.
    small = make(names=("s1", "s2", "s3"), member_count=lambda: 10_000)
    assert MIN_REBALANCE_INTERVAL <= small.rebalance_interval() < 180


def test_interval_with_no_servers_is_the_floor() -> None:
    m = make(member_count=lambda: 10**9)
    assert m.rebalance_interval() < MIN_REBALANCE_INTERVAL + REBALANCE_JITTER


def test_reset_and_set_timer_move_next_rebalance() -> None:
    now = [1000.0]
    m = make(names=("s1",), clock=lambda: now[0])
    interval = m.reset_rebalance_timer()
    assert m.next_rebalance == pytest.approx(1000.0 + interval)
    m.set_rebalance_timer(5)
    assert m.next_rebalance == 1005.0
    assert m.state().rebalance_in == 5.0
    now[0] = 1010.0
    assert m.state().rebalance_in == 0.0


async def test_loop_rebalances_when_triggered_and_resets_timer() -> None:
    pinger = FauxPinger()
    async with make(pinger, names=("s1", "s2", "s3")) as m:
        assert m.next_rebalance - asyncio.get_running_loop().time() >= MIN_REBALANCE_INTERVAL - 1
        m.trigger_rebalance()
        async with asyncio.timeout(5):
            while m.rebalances < 1:
                await asyncio.sleep(0.005)
        assert pinger.pinged  # it pinged
        assert m.state().rebalance_in >= MIN_REBALANCE_INTERVAL - 1  # reset after
        m.set_rebalance_timer(0.01)
        async with asyncio.timeout(5):
            while m.rebalances < 2:
                await asyncio.sleep(0.005)
    assert not m._loops.running


async def test_loop_treats_raising_pings_as_unhealthy() -> None:
    class Broken(FauxPinger):
        async def ping(self, server: Server) -> bool:
            raise asyncio.InvalidStateError("odd")

    async with make(Broken(), names=("s1", "s2")) as m:
        m.trigger_rebalance()
        async with asyncio.timeout(5):
            while m.rebalances < 1:
                await asyncio.sleep(0.005)
        assert m.offline


async def test_aclose_cancels_a_rebalance_in_progress() -> None:
    pinger = GatedPinger()
    m = make(pinger, names=("s1", "s2"))
    m.start()
    m.trigger_rebalance()
    await asyncio.wait_for(pinger.waiting.wait(), 5)
    async with asyncio.timeout(2):
        await m.aclose()
    assert names(m) == ["s1", "s2"]


def test_state_snapshot() -> None:
    m = make(names=("s1", "s2"))
    st = m.state()
    assert st.datacenter == "dc1"
    assert st.servers == (srv("s1"), srv("s2"))
    assert st.offline is False
    d = st.to_dict()
    assert d["Servers"] == [
        {"Name": "s1", "Address": "10.0.0.1:8300", "Datacenter": "dc1"},
        {"Name": "s2", "Address": "10.0.0.2:8300", "Datacenter": "dc1"},
    ]


def test_server_validation() -> None:
    with pytest.raises(ValueError, match="host:port"):
        Server("a", "nohost", "dc1")
    with pytest.raises(ValueError, match="name"):
        Server("", "1.2.3.4:5", "dc1")
    with pytest.raises(ValueError, match="datacenter"):
        Server("a", "1.2.3.4:5", "")
