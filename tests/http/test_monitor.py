"""The monitor's log fan-out: levels below the agent's are served without changing its log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from agent.http.operator_routes import LogBroadcast


@pytest.fixture
def agent_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    out = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(out)]
    root.setLevel(logging.INFO)
    yield out
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


async def test_debug_monitor_on_an_info_agent(agent_log: io.StringIO) -> None:
    broadcast = LogBroadcast()
    log = logging.getLogger("agent.test")
    with broadcast.subscribe(logging.DEBUG, as_json=False) as queue:
        log.debug("detail %d", 1)
        log.info("news")
        lines = [await queue.get(), await queue.get()]
    assert "[DEBUG] agent.test: detail 1" in lines[0] and "[INFO]" in lines[1]
    # The agent's own log stayed at INFO, and is back to normal afterwards.
    assert agent_log.getvalue() == "news\n"
    assert logging.getLogger().level == logging.INFO
    log.debug("after")
    assert "after" not in agent_log.getvalue()


async def test_reload_changes_level_under_a_monitor(agent_log: io.StringIO) -> None:
    broadcast = LogBroadcast()
    log = logging.getLogger("agent.test")
    with broadcast.subscribe(logging.DEBUG, as_json=True) as queue:
        broadcast.set_agent_level(logging.WARNING)
        log.info("quiet")
        assert '"@message": "quiet"' in await queue.get()
    assert agent_log.getvalue() == ""
    assert logging.getLogger().level == logging.WARNING
