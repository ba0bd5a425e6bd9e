"""Check statuses, their aggregate, and the thresholds that damp flapping.

Statuses are Consul's plain strings. ``StatusHandler`` sits between a runner's
probe and the check's notifier, like Consul's ``StatusHandler``: a result is
only passed on once ``success_before_passing`` successes (or
``failures_before_critical`` failures) have been seen in a row.

Two points where we part from, or pin down, Consul (``agent/checks/check.go``):

- Consul counts ``warning`` on the success side (it resets the failure count),
  and so do we: only ``critical`` is a failure.
- Consul primes both counters with their thresholds, so the very first result
  of a new check is applied at once whatever the thresholds say; users asked
  for the thresholds to hold from the first run (hashicorp/nomad#9189,
  hashicorp/consul#10256), and the design follows users where Consul is
  awkward. Our counters start at zero: with ``success_before_passing=3`` a new
  check stays at its initial status until three probes have passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

__all__ = [
    "CRITICAL",
    "MAINTENANCE",
    "PASSING",
    "STATUSES",
    "WARNING",
    "StatusHandler",
    "aggregate",
]

logger = logging.getLogger(__name__)

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
MAINTENANCE: Final = "maintenance"

#: Statuses a check may be given (maintenance is only ever synthetic).
STATUSES: Final = frozenset({PASSING, WARNING, CRITICAL})

# Higher wins when several checks are folded into one status.
_RANK: Final = {PASSING: 0, WARNING: 1, CRITICAL: 2, MAINTENANCE: 3}


def aggregate(statuses: Iterable[str]) -> str:
    """The status of a set of checks: maintenance > critical > warning > passing.

    No checks at all is ``passing``, as in Consul's ``HealthChecks.AggregatedStatus``.
    An unknown status counts as critical.
    """
    worst = PASSING
    for status in statuses:
        if _RANK.get(status, _RANK[CRITICAL]) > _RANK[worst]:
            worst = status if status in _RANK else CRITICAL
    return worst


class StatusHandler:
    """Passes a probe's result on only after enough equal results in a row.

    ``update`` is called with each probe result; ``apply(status, output)`` is
    called when the result takes effect. A threshold of 0 or 1 means "at once".
    ``failures_before_warning`` (0 means: same as ``failures_before_critical``)
    lets a failing check show ``warning`` before it turns critical.
    Not thread-safe; each runner owns one and calls it from its own task.
    """

    __slots__ = (
        "_apply",
        "_check_id",
        "_failures",
        "_failures_before_critical",
        "_failures_before_warning",
        "_success_before_passing",
        "_successes",
    )

    def __init__(
        self,
        check_id: str,
        apply: Callable[[str, str], None],
        *,
        success_before_passing: int = 0,
        failures_before_warning: int = 0,
        failures_before_critical: int = 0,
    ) -> None:
        self._check_id = check_id
        self._apply = apply
        self._success_before_passing = success_before_passing
        self._failures_before_critical = failures_before_critical
        self._failures_before_warning = failures_before_warning or failures_before_critical
        self._successes = 0
        self._failures = 0

    def update(self, status: str, output: str) -> None:
        """Count one probe result and apply it when its threshold is reached."""
        if status in (PASSING, WARNING):
            self._successes += 1
            self._failures = 0
            if self._successes >= self._success_before_passing:
                self._apply(status, output)
                return
            logger.warning(
                "check passed but has not reached success threshold check=%s status=%s "
                "success_count=%d success_threshold=%d",
                self._check_id, status, self._successes, self._success_before_passing,
            )
            return
        self._failures += 1
        self._successes = 0
        if self._failures >= self._failures_before_critical:
            self._apply(status, output)
            return
        if self._failures >= self._failures_before_warning:
            self._apply(WARNING, output)
            return
        logger.warning(
            "check failed but has not reached warning/failure threshold check=%s "
            "failure_count=%d warning_threshold=%d failure_threshold=%d",
            self._check_id, self._failures, self._failures_before_warning,
            self._failures_before_critical,
        )
