"""Raw HTTP for the fuzz suite, and what every answer and every agent must satisfy afterwards."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from tests.support.procs import AgentProcess, wait_until

# 5xx answers Consul documents (its error texts); anything else is a crash.
DOCUMENTED_5XX = (
    "No known Consul servers",
    "No cluster leader",
    "No path to datacenter",
    "Remote DC has no server currently reachable",
)
TRACEBACK_MARKERS = (b"Traceback (most recent call last)", b'File "/', b"Internal error")

# A request that gets no answer in this long is abandoned (a vanished client:
# the agent must clean up after it, which the end-of-run checks see).
REQUEST_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no answer before the timeout or the connection closed
    body: bytes


def raw_request(agent: AgentProcess, data: bytes, timeout: float = REQUEST_TIMEOUT) -> Answer:
    host, port = agent.http_addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionError):
            return Answer(0, b"")
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Answer(0, raw)
    return Answer(int(parts[1]), body)


def request_bytes(
    method: str, target: str, body: bytes = b"", headers: dict[str, bytes] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("utf-8", "surrogateescape"), b"Host: fuzz"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_sane(answer: Answer, what: str) -> None:
    """No traceback text, and no 5xx but Consul's documented ones."""
    for marker in TRACEBACK_MARKERS:
        assert marker not in answer.body, f"{what}: traceback text in {answer.body[:300]!r}"
    if answer.status >= 500:
        text = answer.body.decode("utf-8", "replace")
        assert any(doc in text for doc in DOCUMENTED_5XX), f"{what}: {answer.status} {text[:300]}"


def get_json(agent: AgentProcess, path: str) -> object:
    answer = raw_request(agent, request_bytes("GET", path), timeout=10)
    assert answer.status == 200, (path, answer)
    return json.loads(answer.body)


def gauge(agent: AgentProcess, name: str) -> float:
    doc = get_json(agent, "/v1/agent/metrics")
    assert isinstance(doc, dict)
    for g in doc["Gauges"]:
        if g["Name"] == name:
            return float(g["Value"])
    raise AssertionError(f"no gauge {name}")


def fd_count(agent: AgentProcess) -> int:
    assert agent.proc is not None
    return len(os.listdir(f"/proc/{agent.proc.pid}/fd"))


@dataclass(frozen=True, slots=True)
class Usage:
    tasks: float
    fds: int

    @classmethod
    def of(cls, agent: AgentProcess) -> Usage:
        # Each open view holds two tasks until it idles out (its loop, and on a
        # client agent its gRPC stream's): a bounded cache, not a leak
        # (agent/views/store.py); the fuzz reads open one per random name.
        views = gauge(agent, "consul.views")
        tasks = gauge(agent, "consul.runtime.num_goroutines") - 2 * views
        return cls(tasks, fd_count(agent))


def clean_registrations(agent: AgentProcess) -> None:
    """Deregister what the fuzz registered locally (checks own tasks; they are not leaks)."""
    services = get_json(agent, "/v1/agent/services")
    checks = get_json(agent, "/v1/agent/checks")
    assert isinstance(services, dict) and isinstance(checks, dict)
    from urllib.parse import quote

    for sid in services:
        raw_request(agent, request_bytes("PUT", "/v1/agent/service/deregister/" + _q(sid, quote)))
    for cid in checks:
        raw_request(agent, request_bytes("PUT", "/v1/agent/check/deregister/" + _q(cid, quote)))
    sessions = get_json(agent, "/v1/session/list")
    assert isinstance(sessions, list)
    for s in sessions:
        raw_request(agent, request_bytes("PUT", "/v1/session/destroy/" + _q(s["ID"], quote)))


def _q(text: str, quote: object) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")  # type: ignore[operator,no-any-return]


def assert_back_near(
    agent: AgentProcess, before: Usage, slack_tasks: int = 10, slack_fds: int = 10
) -> Usage:
    """Poll (bounded) until tasks and FDs are back within ``slack`` of ``before``."""

    def settled() -> Usage | None:
        now = Usage.of(agent)
        ok = now.tasks <= before.tasks + slack_tasks and now.fds <= before.fds + slack_fds
        return now if ok else None

    result: Usage = wait_until(
        settled, timeout=30, what=f"{agent.name} tasks/FDs back near {before}"
    )
    return result


def assert_still_serves(agent: AgentProcess) -> None:
    assert agent.alive, f"{agent.name} died"
    answer = raw_request(agent, request_bytes("GET", "/v1/status/leader"), timeout=10)
    assert answer.status == 200, answer
    answer = raw_request(agent, request_bytes("PUT", "/v1/kv/fuzz-alive", b"yes"), timeout=10)
    assert (answer.status, answer.body.strip()) == (200, b"true"), answer


def log_tracebacks(agent: AgentProcess) -> list[str]:
    text = agent.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line]
