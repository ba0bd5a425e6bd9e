"""Fuzz every HTTP route of a client agent and a dev server with hostile requests (issue 15).

Each case must answer without a traceback and without a 5xx other than
Consul's documented ones. After the run: both agents still serve, no
traceback was logged, and their asyncio task and FD counts are back near
where they started (abandoned requests and refused ones leave nothing).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.conftest import FUZZ_EXAMPLES, Targets
from tests.fuzz.strategies import ROUTES, Request, requests
from tests.fuzz.support import (
    Usage,
    assert_back_near,
    assert_sane,
    assert_still_serves,
    clean_registrations,
    log_tracebacks,
    raw_request,
    request_bytes,
)
from tests.support.procs import AgentProcess

pytestmark = pytest.mark.timeout(600)


def _fuzz(agent: AgentProcess, examples: int) -> dict[int, int]:
    statuses: dict[int, int] = {}

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def case(req: Request) -> None:
        answer = raw_request(agent, request_bytes(req.method, req.target, req.body, req.headers))
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert_sane(answer, req.describe())

    case()
    return statuses


def test_route_table_is_complete() -> None:
    # Every route family of Consul's API we serve is fuzzed (leave excepted).
    prefixes = {path.split("/")[2] for _, path in ROUTES}
    assert prefixes >= {"agent", "catalog", "health", "kv", "status", "session", "event", "txn"}
    assert len(ROUTES) >= 39


@pytest.mark.parametrize("which", ["client", "server"])
def test_fuzz_http_routes(targets: Targets, which: str) -> None:
    agent = targets.client if which == "client" else targets.server
    before = Usage.of(agent)
    statuses = _fuzz(agent, FUZZ_EXAMPLES)
    print(f"\n{which}: {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
    assert_still_serves(agent)
    assert_still_serves(targets.client)
    assert not log_tracebacks(agent), log_tracebacks(agent)[:5]
    clean_registrations(agent)
    after = assert_back_near(agent, before)
    print(
        f"{which}: tasks {before.tasks:.0f} -> {after.tasks:.0f}, fds {before.fds} -> {after.fds}"
    )
