from __future__ import annotations

from agent.checks import CRITICAL, MAINTENANCE, PASSING, WARNING, StatusHandler, aggregate


def test_aggregate_precedence() -> None:
    assert aggregate([]) == PASSING
    assert aggregate([PASSING, PASSING]) == PASSING
    assert aggregate([PASSING, WARNING]) == WARNING
    assert aggregate([WARNING, CRITICAL, PASSING]) == CRITICAL
    assert aggregate([CRITICAL, MAINTENANCE, WARNING]) == MAINTENANCE
    assert aggregate(iter([MAINTENANCE, PASSING])) == MAINTENANCE


def test_aggregate_unknown_counts_as_critical() -> None:
    assert aggregate([PASSING, "bogus"]) == CRITICAL
    assert aggregate(["bogus", MAINTENANCE]) == MAINTENANCE


class Recorder:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []

    def __call__(self, status: str, output: str) -> None:
        self.applied.append((status, output))


def test_no_thresholds_apply_every_result() -> None:
    rec = Recorder()
    h = StatusHandler("c", rec)
    h.update(PASSING, "a")
    h.update(CRITICAL, "b")
    h.update(WARNING, "c")
    assert rec.applied == [(PASSING, "a"), (CRITICAL, "b"), (WARNING, "c")]


def test_success_before_passing_needs_consecutive_successes() -> None:
    rec = Recorder()
    h = StatusHandler("c", rec, success_before_passing=2)
    h.update(PASSING, "1")
    assert rec.applied == []  # held from the very first run (see status.py)
    h.update(PASSING, "2")
    assert rec.applied == [(PASSING, "2")]
    h.update(CRITICAL, "x")
    assert rec.applied[-1] == (CRITICAL, "x")
    h.update(PASSING, "3")
    h.update(CRITICAL, "y")  # breaks the run of successes
    h.update(PASSING, "4")
    assert rec.applied[-1] == (CRITICAL, "y")
    h.update(PASSING, "5")
    assert rec.applied[-1] == (PASSING, "5")


def test_failures_before_critical_needs_consecutive_failures() -> None:
    rec = Recorder()
    h = StatusHandler("c", rec, failures_before_critical=3)
    h.update(CRITICAL, "1")
    h.update(CRITICAL, "2")
    assert rec.applied == []
    h.update(CRITICAL, "3")
    assert rec.applied == [(CRITICAL, "3")]
    h.update(PASSING, "ok")
    h.update(CRITICAL, "a")
    h.update(CRITICAL, "b")
    assert rec.applied[-1] == (PASSING, "ok")
    h.update(CRITICAL, "c")
    assert rec.applied[-1] == (CRITICAL, "c")


def test_warning_counts_on_success_side_like_consul() -> None:
    # Consul's StatusHandler: passing or warning increments successes, resets failures.
    rec = Recorder()
    h = StatusHandler("c", rec, failures_before_critical=2)
    h.update(CRITICAL, "1")
    h.update(WARNING, "w")
    h.update(CRITICAL, "2")
    assert rec.applied == [(WARNING, "w")]
    h.update(CRITICAL, "3")
    assert rec.applied[-1] == (CRITICAL, "3")


def test_failures_before_warning_shows_warning_first() -> None:
    rec = Recorder()
    h = StatusHandler("c", rec, failures_before_warning=1, failures_before_critical=3)
    h.update(CRITICAL, "1")
    assert rec.applied == [(WARNING, "1")]
    h.update(CRITICAL, "2")
    h.update(CRITICAL, "3")
    assert rec.applied == [(WARNING, "1"), (WARNING, "2"), (CRITICAL, "3")]
