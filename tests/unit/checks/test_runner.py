from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from agent.checks import (
    CRITICAL,
    OUTPUT_MAX_SIZE,
    PASSING,
    WARNING,
    CheckManager,
    CheckSpec,
    IntervalRunner,
    validate_spec,
)
from agent.errors import InvalidArgument, NotFound

Event = tuple[str, str, str, bool]


class Recorder:
    """The on_update callback: keeps every call."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, check_id: str, status: str, output: str, status_changed: bool) -> None:
        self.events.append((check_id, status, output, status_changed))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedRunner(IntervalRunner):
    """A probing runner whose probe results come from a list (the last one repeats)."""

    def __init__(self, spec: CheckSpec, on_update: Recorder, results: list[tuple[str, str]],
                 **kw: object) -> None:
        super().__init__(spec, on_update, **kw)  # type: ignore[arg-type]
        self.results = results
        self.probes = 0

    async def probe(self) -> tuple[str, str]:
        self.probes += 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


def spec_for(**kw: object) -> CheckSpec:
    base: dict[str, object] = {"check_id": "c", "tcp": "127.0.0.1:1", "interval": 0.02}
    base.update(kw)
    return validate_spec(CheckSpec(**base), enable_script_checks=False,  # type: ignore[arg-type]
                         min_interval=0.01)


# -- the notifier --------------------------------------------------------------------


def test_set_status_reports_changes_and_output_only_changes() -> None:
    rec = Recorder()
    clock = FakeClock()
    r = ScriptedRunner(spec_for(), rec, [(PASSING, "")], clock=clock)
    assert (r.status, r.critical_since) == (CRITICAL, 1000.0)  # new checks start critical
    r.set_status(CRITICAL, "")
    assert rec.events == []  # nothing changed: silent
    r.set_status(CRITICAL, "down")
    assert rec.events == [("c", CRITICAL, "down", False)]  # output only
    clock.now = 1010.0
    r.set_status(PASSING, "up")
    assert rec.events[-1] == ("c", PASSING, "up", True)
    assert r.critical_since is None
    r.set_status(WARNING, "meh")
    assert rec.events[-1] == ("c", WARNING, "meh", True)
    clock.now = 1020.0
    r.set_status(CRITICAL, "down")
    assert r.critical_since == 1020.0
    clock.now = 1021.0
    r.set_status(CRITICAL, "still down")
    assert r.critical_since == 1020.0  # kept while it stays critical
    assert r.critical_for() == 1.0
    r.close()
    r.set_status(PASSING, "after close")
    assert rec.events[-1][2] == "still down"


def test_initial_status_is_honoured() -> None:
    r = ScriptedRunner(spec_for(status=PASSING), Recorder(), [(PASSING, "")])
    assert (r.status, r.critical_since) == (PASSING, None)


def test_set_status_caps_output() -> None:
    rec = Recorder()
    r = ScriptedRunner(spec_for(), rec, [(PASSING, "")])
    r.set_status(PASSING, "x" * 10_000)
    assert len(r.output.encode()) <= OUTPUT_MAX_SIZE
    assert rec.events[-1][2] == r.output


def test_callback_error_does_not_break_runner() -> None:
    def boom(check_id: str, status: str, output: str, status_changed: bool) -> None:
        raise RuntimeError("boom")

    r = ScriptedRunner(spec_for(), Recorder(), [(PASSING, "")])
    r._on_update = boom
    r.set_status(PASSING, "ok")
    assert r.status == PASSING


# -- the interval loop -----------------------------------------------------------------


async def test_first_run_after_random_delay_within_interval() -> None:
    seed_rng = random.Random(7)
    expected = random.Random(7).uniform(0, 0.3)
    rec = Recorder()
    r = ScriptedRunner(spec_for(interval=0.3), rec, [(PASSING, "ok")], rng=seed_rng)
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(r.run())
    try:
        await wait_until(lambda: r.probes >= 1)
        elapsed = loop.time() - start
        assert elapsed <= 0.3 + 0.1
        assert elapsed >= expected - 0.02
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_probe_exception_is_critical_and_loop_goes_on() -> None:
    class Broken(IntervalRunner):
        calls = 0

        async def probe(self) -> tuple[str, str]:
            Broken.calls += 1
            raise ValueError("bad probe")

    rec = Recorder()
    r = Broken(spec_for(status=PASSING), rec)
    task = asyncio.create_task(r.run())
    try:
        await wait_until(lambda: Broken.calls >= 2)
        assert r.status == CRITICAL
        assert "bad probe" in r.output
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_stuck_probe_times_out() -> None:
    class Stuck(IntervalRunner):
        probe_grace = 0.0

        async def probe(self) -> tuple[str, str]:
            await asyncio.sleep(60)
            return PASSING, ""

    r = Stuck(spec_for(timeout=0.05, status=PASSING), Recorder())
    await r.check_once()
    assert r.status == CRITICAL
    assert r.output.startswith("Timed out (50ms) running check")


async def test_thresholds_through_the_runner() -> None:
    rec = Recorder()
    r = ScriptedRunner(
        spec_for(success_before_passing=2, failures_before_critical=3), rec, [(PASSING, "")]
    )
    r.results = [(PASSING, "p1"), (PASSING, "p2"), (CRITICAL, "f1"), (CRITICAL, "f2"),
                 (CRITICAL, "f3")]
    await r.check_once()
    assert r.status == CRITICAL
    await r.check_once()
    assert (r.status, r.output) == (PASSING, "p2")
    await r.check_once()
    await r.check_once()
    assert r.status == PASSING
    await r.check_once()
    assert (r.status, r.output) == (CRITICAL, "f3")
    assert [e[3] for e in rec.events] == [True, True]


# -- TTL checks and the manager --------------------------------------------------------


async def test_ttl_lifecycle() -> None:
    rec = Recorder()
    async with CheckManager(rec) as checks:
        checks.add(CheckSpec(check_id="t", ttl=0.15))
        assert checks.get("t").status == CRITICAL
        checks.update_ttl("t", PASSING, "I am alive")
        assert checks.get("t").status == PASSING
        assert rec.events[-1] == ("t", PASSING, "I am alive", True)
        # Keep renewing: stays passing past one TTL.
        for _ in range(3):
            await asyncio.sleep(0.05)
            checks.update_ttl("t", PASSING, "I am alive")
        assert checks.get("t").status == PASSING
        await wait_until(lambda: checks.get("t").status == CRITICAL)
        state = checks.get("t")
        assert state.output == "TTL expired (last output before timeout follows): I am alive"
        assert state.critical_since is not None
        assert rec.events[-1][3] is True
        checks.update_ttl("t", WARNING, "")
        assert checks.get("t").status == WARNING


async def test_ttl_expires_without_any_update() -> None:
    rec = Recorder()
    async with CheckManager(rec) as checks:
        checks.add(CheckSpec(check_id="t", ttl=0.05))
        await wait_until(lambda: bool(rec.events))
        # Already critical: only the output changes, to Consul's plain text.
        assert rec.events == [("t", CRITICAL, "TTL expired", False)]


async def test_manager_errors() -> None:
    async with CheckManager(Recorder(), min_interval=0.01) as checks:
        with pytest.raises(NotFound, match="Unknown check ID"):
            checks.update_ttl("nope", PASSING, "")
        with pytest.raises(NotFound):
            checks.remove("nope")
        with pytest.raises(NotFound):
            checks.get("nope")
        checks.add(CheckSpec(check_id="tcp", tcp="127.0.0.1:1", interval=60))
        with pytest.raises(InvalidArgument, match="does not have associated TTL"):
            checks.update_ttl("tcp", PASSING, "")
        checks.add(CheckSpec(check_id="t", ttl=10))
        with pytest.raises(InvalidArgument, match="Bad check status"):
            checks.update_ttl("t", "maintenance", "")
        with pytest.raises(InvalidArgument, match="Scripts are disabled"):
            checks.add(CheckSpec(check_id="s", args=["true"], interval=1))
        assert "s" not in checks
        assert checks.spec("tcp").interval == 60


async def test_add_outside_context_refused() -> None:
    checks = CheckManager(Recorder())
    with pytest.raises(RuntimeError):
        checks.add(CheckSpec(check_id="t", ttl=1))


async def test_replace_and_remove_stop_old_runner() -> None:
    rec = Recorder()
    async with CheckManager(rec) as checks:
        checks.add(CheckSpec(check_id="t", ttl=0.05))
        checks.add(CheckSpec(check_id="t", ttl=30, status=PASSING))  # replaces
        assert len(checks) == 1
        assert checks.get("t").status == PASSING
        await asyncio.sleep(0.15)  # the old runner's TTL would have fired by now
        assert rec.events == []
        checks.remove("t")
        assert "t" not in checks
        assert checks.statuses() == {}


async def test_statuses_and_aggregate() -> None:
    async with CheckManager(Recorder()) as checks:
        checks.add(CheckSpec(check_id="a", ttl=30, status=PASSING, service_id="web"))
        checks.add(CheckSpec(check_id="b", ttl=30, status=WARNING, service_id="web"))
        checks.add(CheckSpec(check_id="c", ttl=30, service_id="db"))
        assert checks.statuses() == {"a": PASSING, "b": WARNING, "c": CRITICAL}
        assert checks.aggregate_status("web") == WARNING
        assert checks.aggregate_status("db") == CRITICAL
        assert checks.aggregate_status("none") == PASSING
        assert checks.aggregate_status() == CRITICAL
        assert set(checks.states()) == {"a", "b", "c"}


async def test_services_to_reap() -> None:
    clock = FakeClock()
    async with CheckManager(Recorder(), clock=clock) as checks:
        checks.add(CheckSpec(check_id="a", ttl=30, service_id="web",
                             deregister_critical_service_after=60))
        checks.add(CheckSpec(check_id="b", ttl=30, service_id="db"))  # never reaped
        checks.add(CheckSpec(check_id="n", ttl=30, deregister_critical_service_after=60))
        assert checks.services_to_reap() == set()
        clock.now += 61
        assert checks.services_to_reap() == {"web"}
        checks.update_ttl("a", PASSING, "")
        assert checks.services_to_reap() == set()


async def test_aclose_is_bounded_and_final() -> None:
    checks = CheckManager(Recorder(), min_interval=0.01, stop_timeout=1.0)
    async with checks:
        for i in range(20):
            checks.add(CheckSpec(check_id=f"t{i}", ttl=30))
            checks.add(CheckSpec(check_id=f"c{i}", tcp="127.0.0.1:1", interval=0.01))
        tasks = [e.task for e in checks._entries.values()]
    assert all(t.done() for t in tasks)
    assert len(checks) == 0
    with pytest.raises(RuntimeError):
        await checks.__aenter__()
