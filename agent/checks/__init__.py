"""Health checks of an agent: specs, statuses, one runner per kind, and their manager.

::

    spec = CheckSpec(check_id="web", http="http://127.0.0.1:8080/health", interval=10)
    async with CheckManager(on_update, enable_script_checks=False) as checks:
        checks.add(spec)            # validated; starts critical, first run within 10 s
        checks.get("web").status    # "critical" | "warning" | "passing"

``on_update(check_id, status, output, status_changed)`` hears every change; the
owner (the agent's local state) syncs status changes at once and batches
output-only ones.
"""

from __future__ import annotations

from agent.checks.grpc_check import GRPCRunner
from agent.checks.http_check import USER_AGENT, HTTPRunner
from agent.checks.manager import CheckManager
from agent.checks.output import OUTPUT_MAX_SIZE, OutputBuffer, cap_output
from agent.checks.runner import CheckRunner, CheckState, IntervalRunner, UpdateCallback
from agent.checks.script_check import ScriptRunner
from agent.checks.spec import (
    DEFAULT_SCRIPT_TIMEOUT,
    DEFAULT_TIMEOUT,
    KINDS,
    MIN_DEREGISTER,
    MIN_INTERVAL,
    SCRIPTS_DISABLED,
    CheckKind,
    CheckSpec,
    split_grpc_target,
    split_host_port,
    validate_spec,
)
from agent.checks.status import (
    CRITICAL,
    MAINTENANCE,
    PASSING,
    STATUSES,
    WARNING,
    StatusHandler,
    aggregate,
)
from agent.checks.tcp_check import TCPRunner
from agent.checks.ttl_check import TTLRunner

__all__ = [
    "CRITICAL",
    "DEFAULT_SCRIPT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "KINDS",
    "MAINTENANCE",
    "MIN_DEREGISTER",
    "MIN_INTERVAL",
    "OUTPUT_MAX_SIZE",
    "PASSING",
    "SCRIPTS_DISABLED",
    "STATUSES",
    "USER_AGENT",
    "WARNING",
    "CheckKind",
    "CheckManager",
    "CheckRunner",
    "CheckSpec",
    "CheckState",
    "GRPCRunner",
    "HTTPRunner",
    "IntervalRunner",
    "OutputBuffer",
    "ScriptRunner",
    "StatusHandler",
    "TCPRunner",
    "TTLRunner",
    "UpdateCallback",
    "aggregate",
    "cap_output",
    "split_grpc_target",
    "split_host_port",
    "validate_spec",
]
